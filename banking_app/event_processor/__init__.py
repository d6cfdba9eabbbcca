"""The event processor: the command agent and everything only it uses.

It decodes each input of ``commands`` (records, bundles of saga legs), re-keys records
on the wrong partition, dead-letters what is not a command, applies each input at most
once (``idempotency``) by the pure ``decide``/``evolve``, emits the events, and keeps
the ``accounts`` and ``command-offsets`` tables (``tables``).
"""
