"""HTTP pieces both services use: problem+json errors, request validation, the base
view, read-your-writes lookups, and the operational views (health, metrics, OpenAPI).

The services' own views live with them (``command_service.views``,
``query_service.views``); ``banking_app.app`` registers them all.
"""
