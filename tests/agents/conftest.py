import os

# Agent unit tests keep tables in memory; this must be set before banking_app.app is
# imported, which configures the app (worker subprocesses get their own environment).
os.environ["BANKING_STORE"] = "memory://"
