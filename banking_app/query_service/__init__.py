"""The query service: the read model, folded from ``events`` alone (CQRS).

``read_model`` is the pure fold, ``projections`` the agents that run it into the read
tables, ``views`` the GET views that answer from them.
"""
