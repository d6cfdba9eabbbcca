"""The risk service: alerts folded from the ``events`` topic (complex event processing).

``rules`` is the pure core (an account's rule state and one event in, the new state and
its alerts out), ``agent`` the shell that runs it over ``events`` into the ``alerts``
topic and the alert tables, ``views`` the GET views that answer from them.
"""
