"""An event-sourced bank: a pure domain core (``banking_app.domain``) inside a Faust shell."""

__version__ = "0.1.0"
