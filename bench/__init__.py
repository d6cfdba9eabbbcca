"""The project's benchmark: the bank against its own baselines, measured in one run."""
