"""The HTTP side of the worker (Faust web views): commands in, queries out, operations.

Importing this package registers every view with the app.
"""

from banking_app.web import commands, health, metrics, openapi, queries

__all__ = ["commands", "health", "metrics", "openapi", "queries"]
