"""The event processor: the command agent and everything only it uses.

It decodes each input of ``commands`` (records, bundles of saga and claim legs), re-keys
records on the wrong partition, dead-letters what is not a command, claims each public
command's id bank-wide and holds the command in its account's queue until the answer
comes (``pending``), applies each input at most once (``idempotency``) by the pure
``decide``/``evolve``, emits the events, and keeps the ``accounts``,
``command-offsets`` and ``command-claims`` tables (``tables``).
"""
