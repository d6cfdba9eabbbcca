"""The command service: accepts commands over HTTP, validates them and puts them on the
``commands`` topic. Stateless; what it knows of outcomes (``?wait=true``) it reads from
the query service's tables through ``banking_app.web.lookups``.
"""
