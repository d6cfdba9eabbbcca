"""A Faust app of your own that banks through the typed Records of ``banking_app.records``.

It opens an account, deposits into it, and prints the account's events as they arrive,
each decoded into the Record class its ``type`` names. Start the bank (``make run``),
then, in another terminal, run it as any Faust app is run, with Faust's command line::

    python examples/faust_client.py worker -l info

Ctrl-C stops it. Environment:

- ``KAFKA_BROKER``: the bank's broker (default ``kafka://localhost:9092``);
- ``ACCOUNT_ID``: the account to open (default: a new one each run). The command ids are
  made from it, so a second run with the same ``ACCOUNT_ID`` sends the same commands
  again and the bank ignores the copies: commands are applied once per id;
- ``DEPOSIT_AMOUNT``: in cents (default 2500).

``app.main()`` is Faust's command line, as in Faust's own examples: ``worker`` runs the
agent and the task until stopped (it sends Python's ``print`` to its log, at WARNING,
as Faust's worker does). The app has its own id, so its own consumer group: it
reads ``events`` from the start the first time, then from where it left off. It serves
Faust's web pages on port 6067, beside the bank's worker on 6066 (``--without-web`` after
``worker`` turns them off), and keeps its data directory where Faust does,
``bank-faust-client-data`` in the current directory (``--datadir`` before ``worker``
moves it).
"""

from __future__ import annotations

import os
import uuid

import faust

from banking_app.records import (
    CreateAccount,
    Deposit,
    EventRecord,
    MoneyDeposited,
    typed_topics,
)

ACCOUNT_ID = os.environ.get("ACCOUNT_ID") or f"faust-{uuid.uuid4().hex[:12]}"
DEPOSIT_AMOUNT = int(os.environ.get("DEPOSIT_AMOUNT", "2500"))

app = faust.App(
    "bank-faust-client",
    broker=os.environ.get("KAFKA_BROKER", "kafka://localhost:9092"),
    # The bank's worker serves on Faust's default port, 6066; ``--without-web`` turns
    # this one off.
    web_port=6067,
    # With Faust's defaults a new group's first join can take half a minute on a small
    # broker; these are the bank's own worker's.
    broker_rebalance_timeout=5.0,
    broker_session_timeout=10.0,
    # A client of the bank's topics needs no leader topic of its own on the bank's broker.
    topic_disable_leader=True,
)

# The bank's ``commands`` and ``events``, keyed by account id, valued by Records.
commands, events = typed_topics(app)


@app.agent(events)
async def print_events(stream: faust.StreamT[EventRecord]) -> None:
    """Print our account's events: each is already its Record, with typed fields."""
    async for event in stream:
        if event.account_id != ACCOUNT_ID:
            continue  # the topic holds every account's events
        print(event)
        if isinstance(event, MoneyDeposited):
            print(
                f"{event.account_id}: deposited {event.amount}, "
                f"balance {event.balance} {event.currency}"
            )


@app.task
async def open_and_deposit() -> None:
    """Send the commands, keyed by the account (the bank decides them on its partition)."""
    await commands.send(
        key=ACCOUNT_ID,
        value=CreateAccount(
            command_id=f"{ACCOUNT_ID}-open",
            account_id=ACCOUNT_ID,
            owner="A Faust client",
            currency="EUR",
        ),
    )
    await commands.send(
        key=ACCOUNT_ID,
        value=Deposit(
            command_id=f"{ACCOUNT_ID}-deposit", account_id=ACCOUNT_ID, amount=DEPOSIT_AMOUNT
        ),
    )
    print(f"sent: open {ACCOUNT_ID}, deposit {DEPOSIT_AMOUNT}")


if __name__ == "__main__":
    app.main()
