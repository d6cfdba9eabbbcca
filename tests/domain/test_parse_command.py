"""``parse_command``: the one gate from untrusted JSON to typed commands.

Each test reads a plain JSON object (as a client would send it) and says what
comes out: a typed command with exactly the given fields, or ``MalformedCommand``
saying why, under the command id when one could still be read.
"""

from __future__ import annotations

from typing import Any

import pytest

from banking_app.domain import (
    CloseAccount,
    CreateAccount,
    CreditTransfer,
    Deposit,
    MalformedCommand,
    Reason,
    RefundTransfer,
    SetLimits,
    SettleTransfer,
    TransferMoney,
    Withdraw,
    parse_command,
)
from banking_app.domain.commands import (
    COMMAND_TYPES,
    MAX_AMOUNT,
    MAX_OWNER_LENGTH,
    PUBLIC_COMMAND_TYPES,
)

# One well-formed example of every command type, in its plain-JSON wire form.
CREATE = {
    "type": "CREATE_ACCOUNT",
    "command_id": "cmd-create-1",
    "account_id": "acc-1",
    "owner": "Alice",
    "currency": "EUR",
    "overdraft_limit": 500,
}
DEPOSIT = {"type": "DEPOSIT", "command_id": "cmd-dep-1", "account_id": "acc-1", "amount": 1000}
WITHDRAW = {"type": "WITHDRAW", "command_id": "cmd-wd-1", "account_id": "acc-1", "amount": 250}
TRANSFER = {
    "type": "TRANSFER_MONEY",
    "command_id": "cmd-tr-1",
    "account_id": "acc-1",
    "to_account_id": "acc-2",
    "amount": 300,
}
CLOSE = {"type": "CLOSE_ACCOUNT", "command_id": "cmd-close-1", "account_id": "acc-1"}
LIMITS = {
    "type": "SET_LIMITS",
    "command_id": "cmd-limits-1",
    "account_id": "acc-1",
    "daily_withdrawal_limit": 50_000,
}
CREDIT = {
    "type": "TRANSFER_CREDIT",
    "command_id": "cmd-tr-1",
    "account_id": "acc-2",
    "from_account_id": "acc-1",
    "amount": 300,
    "currency": "EUR",
}
REFUND = {
    "type": "TRANSFER_REFUND",
    "command_id": "cmd-tr-1",
    "account_id": "acc-1",
    "to_account_id": "acc-2",
    "amount": 300,
    "reason": "ACCOUNT_NOT_FOUND",
}
SETTLE = {
    "type": "TRANSFER_SETTLE",
    "command_id": "cmd-tr-1",
    "account_id": "acc-1",
    "to_account_id": "acc-2",
    "amount": 300,
}

CLAIM = {
    "type": "CLAIM_COMMAND_ID",
    "command_id": "cmd-tr-1",
    "account_id": "acc-1",
    "fingerprint": "0123456789abcdef0123456789abcdef",
    "offset": 41,
    "index": 0,
}
ANSWER = {**CLAIM, "type": "COMMAND_ID_ANSWER", "answer": "CLAIMED"}

PUBLIC_EXAMPLES = [CREATE, DEPOSIT, WITHDRAW, TRANSFER, CLOSE, LIMITS]
INTERNAL_EXAMPLES = [CREDIT, REFUND, SETTLE, CLAIM, ANSWER]

# What Faust puts into a record serialised from a faust.Record: not a field of ours.
FAUST_METADATA = {"__faust": {"ns": "banking_app.models.Command"}}


def refused(data: Any, **kwargs: Any) -> MalformedCommand:
    with pytest.raises(MalformedCommand) as info:
        parse_command(data, **kwargs)
    error = info.value
    assert error.reason is Reason.MALFORMED_COMMAND
    assert error.reason.value == "MALFORMED_COMMAND"
    assert error.detail  # says why
    return error


def test_the_examples_cover_every_command_type() -> None:
    # If a command type is added, these tests must learn about it.
    assert {e["type"] for e in PUBLIC_EXAMPLES} == set(PUBLIC_COMMAND_TYPES)
    assert {e["type"] for e in PUBLIC_EXAMPLES + INTERNAL_EXAMPLES} == set(COMMAND_TYPES)
    assert set(PUBLIC_COMMAND_TYPES) == {
        "CREATE_ACCOUNT",
        "DEPOSIT",
        "WITHDRAW",
        "TRANSFER_MONEY",
        "CLOSE_ACCOUNT",
        "SET_LIMITS",
    }


def test_create_account_is_read_with_every_field() -> None:
    command = parse_command(CREATE)
    assert command == CreateAccount(
        command_id="cmd-create-1",
        account_id="acc-1",
        owner="Alice",
        currency="EUR",
        overdraft_limit=500,
    )
    assert type(command) is CreateAccount
    assert command.expected_version is None
    assert command.dedupe_id == "cmd-create-1"


def test_limits_are_read_and_a_limit_left_out_is_none() -> None:
    assert parse_command(LIMITS) == SetLimits(
        command_id="cmd-limits-1", account_id="acc-1", daily_withdrawal_limit=50_000
    )
    opened = parse_command({**CREATE, "daily_transfer_limit": 0, "daily_withdrawal_limit": None})
    assert isinstance(opened, CreateAccount)
    assert (opened.daily_withdrawal_limit, opened.daily_transfer_limit) == (None, 0)


@pytest.mark.parametrize("kind", [CREATE, LIMITS], ids=lambda e: e["type"])
@pytest.mark.parametrize("value", [-1, MAX_AMOUNT + 1, 1.5, True, "100", [], {}])
def test_a_limit_that_is_not_a_count_of_minor_units_is_refused(
    kind: dict[str, Any], value: Any
) -> None:
    error = refused({**kind, "daily_transfer_limit": value})
    assert "daily_transfer_limit" in error.detail
    assert error.command_id == kind["command_id"]


def test_create_account_without_overdraft_limit_defaults_to_zero() -> None:
    data = {k: v for k, v in CREATE.items() if k != "overdraft_limit"}
    assert parse_command(data) == CreateAccount(
        command_id="cmd-create-1", account_id="acc-1", owner="Alice", currency="EUR"
    )
    assert parse_command({**data, "overdraft_limit": None}).overdraft_limit == 0


def test_deposit_is_read() -> None:
    command = parse_command(DEPOSIT)
    assert command == Deposit(command_id="cmd-dep-1", account_id="acc-1", amount=1000)
    assert type(command) is Deposit


def test_withdraw_is_read() -> None:
    command = parse_command(WITHDRAW)
    assert command == Withdraw(command_id="cmd-wd-1", account_id="acc-1", amount=250)
    assert type(command) is Withdraw


def test_transfer_money_is_read() -> None:
    command = parse_command(TRANSFER)
    assert command == TransferMoney(
        command_id="cmd-tr-1", account_id="acc-1", to_account_id="acc-2", amount=300
    )
    assert type(command) is TransferMoney
    assert command.dedupe_id == "cmd-tr-1"


def test_close_account_is_read() -> None:
    command = parse_command(CLOSE)
    assert command == CloseAccount(command_id="cmd-close-1", account_id="acc-1")
    assert type(command) is CloseAccount


def test_expected_version_is_read_when_given() -> None:
    assert parse_command({**DEPOSIT, "expected_version": 7}).expected_version == 7
    assert parse_command({**DEPOSIT, "expected_version": 0}).expected_version == 0
    # null means "no expectation", the same as leaving it out
    assert parse_command({**DEPOSIT, "expected_version": None}).expected_version is None


@pytest.mark.parametrize("example", PUBLIC_EXAMPLES, ids=lambda e: e["type"])
def test_unknown_extra_fields_are_ignored(example: dict[str, Any]) -> None:
    plain = parse_command(example)
    with_extras = parse_command({**example, **FAUST_METADATA, "client_note": "hi", "v": 3})
    assert with_extras == plain
    assert not hasattr(with_extras, "__faust")
    assert not hasattr(with_extras, "client_note")


@pytest.mark.parametrize("example", PUBLIC_EXAMPLES, ids=lambda e: e["type"])
def test_parsing_does_not_change_the_input(example: dict[str, Any]) -> None:
    data = {**example, **FAUST_METADATA}
    before = dict(data)
    parse_command(data)
    assert data == before


# -- internal saga legs ---------------------------------------------------------------


def test_internal_legs_are_read_when_allowed() -> None:
    credit = parse_command(CREDIT)
    assert credit == CreditTransfer(
        command_id="cmd-tr-1",
        account_id="acc-2",
        from_account_id="acc-1",
        amount=300,
        currency="EUR",
    )
    assert credit.dedupe_id == "cmd-tr-1/credit"

    refund = parse_command(REFUND, allow_internal=True)
    assert refund == RefundTransfer(
        command_id="cmd-tr-1",
        account_id="acc-1",
        to_account_id="acc-2",
        amount=300,
        reason="ACCOUNT_NOT_FOUND",
    )
    assert refund.dedupe_id == "cmd-tr-1/refund"

    settle = parse_command(SETTLE)
    assert settle == SettleTransfer(
        command_id="cmd-tr-1", account_id="acc-1", to_account_id="acc-2", amount=300
    )
    assert settle.dedupe_id == "cmd-tr-1/settle"


@pytest.mark.parametrize("example", INTERNAL_EXAMPLES, ids=lambda e: e["type"])
def test_internal_legs_are_refused_from_the_public(example: dict[str, Any]) -> None:
    error = refused(example, allow_internal=False)
    # the id is well formed, so the sender can still be told under it
    assert error.command_id == "cmd-tr-1"
    assert "type" in error.detail


@pytest.mark.parametrize("example", PUBLIC_EXAMPLES, ids=lambda e: e["type"])
def test_public_commands_are_read_when_internal_ones_are_not_allowed(
    example: dict[str, Any],
) -> None:
    assert parse_command(example, allow_internal=False) == parse_command(example)


def test_a_refund_reason_must_be_a_reason_code() -> None:
    assert refused({**REFUND, "reason": "no such account"}).command_id == "cmd-tr-1"
    assert refused({**REFUND, "reason": ""}).command_id == "cmd-tr-1"


# -- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [None, [], [DEPOSIT], "DEPOSIT", 42, 1.5, True],
    ids=["null", "empty-list", "list", "string", "int", "float", "bool"],
)
def test_a_non_object_is_refused_without_a_command_id(data: Any) -> None:
    error = refused(data)
    assert error.command_id is None


@pytest.mark.parametrize("kind", ["PAY", "deposit", "", None, 3, ["DEPOSIT"]])
def test_an_unknown_type_is_refused(kind: Any) -> None:
    error = refused({**DEPOSIT, "type": kind})
    assert error.command_id == "cmd-dep-1"
    assert "type" in error.detail


def test_a_missing_type_is_refused() -> None:
    data = {k: v for k, v in DEPOSIT.items() if k != "type"}
    assert refused(data).command_id == "cmd-dep-1"


REQUIRED_FIELDS = [
    (CREATE, "command_id"),
    (CREATE, "account_id"),
    (CREATE, "owner"),
    (CREATE, "currency"),
    (DEPOSIT, "account_id"),
    (DEPOSIT, "amount"),
    (WITHDRAW, "amount"),
    (TRANSFER, "to_account_id"),
    (TRANSFER, "amount"),
    (CLOSE, "account_id"),
    (CREDIT, "from_account_id"),
    (CREDIT, "currency"),
    (REFUND, "reason"),
    (SETTLE, "to_account_id"),
]


@pytest.mark.parametrize(
    ("example", "missing"), REQUIRED_FIELDS, ids=[f"{e['type']}-{f}" for e, f in REQUIRED_FIELDS]
)
def test_a_missing_field_is_refused(example: dict[str, Any], missing: str) -> None:
    data = {k: v for k, v in example.items() if k != missing}
    error = refused(data)
    assert missing in error.detail
    assert error.command_id == (None if missing == "command_id" else example["command_id"])


@pytest.mark.parametrize(
    "amount",
    [10.0, 10.5, True, False, "10", "ten", None, [10], {"value": 10}],
    ids=["float-10.0", "float", "true", "false", "string-digits", "string", "null", "list", "obj"],
)
@pytest.mark.parametrize("example", [DEPOSIT, WITHDRAW, TRANSFER], ids=lambda e: e["type"])
def test_an_amount_that_is_not_an_integer_is_refused(example: dict[str, Any], amount: Any) -> None:
    error = refused({**example, "amount": amount})
    assert "amount" in error.detail
    assert error.command_id == example["command_id"]


@pytest.mark.parametrize("amount", [2**63, -(2**63) - 1, 10**30])
def test_an_amount_beyond_64_bits_is_refused(amount: int) -> None:
    assert refused({**DEPOSIT, "amount": amount}).command_id == "cmd-dep-1"


@pytest.mark.parametrize("amount", [0, -5, -(2**63), MAX_AMOUNT + 1, 2**63 - 1])
def test_a_well_typed_amount_out_of_range_parses_for_the_domain_to_reject(amount: int) -> None:
    # INVALID_AMOUNT is the domain's answer, as an event, not a malformed command.
    assert parse_command({**DEPOSIT, "amount": amount}).amount == amount
    assert parse_command({**WITHDRAW, "amount": amount}).amount == amount
    assert parse_command({**TRANSFER, "amount": amount}).amount == amount


@pytest.mark.parametrize("value", [10.0, True, "3", -1])
def test_a_bad_expected_version_is_refused(value: Any) -> None:
    error = refused({**DEPOSIT, "expected_version": value})
    assert "expected_version" in error.detail
    assert error.command_id == "cmd-dep-1"


@pytest.mark.parametrize("value", [500.0, True, "500", -1, MAX_AMOUNT + 1])
def test_a_bad_overdraft_limit_is_refused(value: Any) -> None:
    error = refused({**CREATE, "overdraft_limit": value})
    assert "overdraft_limit" in error.detail
    assert error.command_id == "cmd-create-1"


def test_an_overdraft_limit_at_the_maximum_amount_is_read() -> None:
    assert parse_command({**CREATE, "overdraft_limit": MAX_AMOUNT}).overdraft_limit == MAX_AMOUNT


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "E1R", "", " EUR", 978, None])
def test_a_bad_currency_is_refused(currency: Any) -> None:
    error = refused({**CREATE, "currency": currency})
    assert "currency" in error.detail
    assert error.command_id == "cmd-create-1"
    assert refused({**CREDIT, "currency": currency}).command_id == "cmd-tr-1"


@pytest.mark.parametrize("owner", ["", " ", "\t\n ", None, 7, "x" * (MAX_OWNER_LENGTH + 1)])
def test_a_blank_or_oversized_owner_is_refused(owner: Any) -> None:
    error = refused({**CREATE, "owner": owner})
    assert "owner" in error.detail
    assert error.command_id == "cmd-create-1"


def test_the_limits_are_the_documented_ones() -> None:
    # Pinned as numbers: the tests above use the constants, which could drift.
    assert (MAX_AMOUNT, MAX_OWNER_LENGTH) == (10**15, 200)
    assert parse_command({**CREATE, "owner": "o" * 200}).owner == "o" * 200
    assert refused({**CREATE, "owner": "o" * 201}).command_id == "cmd-create-1"


def test_an_owner_of_the_maximum_length_is_read() -> None:
    owner = "x" * MAX_OWNER_LENGTH
    assert parse_command({**CREATE, "owner": owner}).owner == owner


BAD_ACCOUNT_IDS = ["", "-leading-dash", "has space", "a/b", "a?b", "é", "x" * 65, 12, None]


@pytest.mark.parametrize("account_id", BAD_ACCOUNT_IDS)
def test_a_bad_account_id_is_refused(account_id: Any) -> None:
    error = refused({**DEPOSIT, "account_id": account_id})
    assert "account_id" in error.detail
    assert error.command_id == "cmd-dep-1"


@pytest.mark.parametrize("account_id", BAD_ACCOUNT_IDS)
def test_a_bad_destination_account_id_is_refused(account_id: Any) -> None:
    error = refused({**TRANSFER, "to_account_id": account_id})
    assert "to_account_id" in error.detail
    assert error.command_id == "cmd-tr-1"


def test_account_ids_up_to_64_characters_are_read() -> None:
    longest = "a" * 64
    assert parse_command({**DEPOSIT, "account_id": longest}).account_id == longest
    assert parse_command({**DEPOSIT, "account_id": "A.b_c:d-9"}).account_id == "A.b_c:d-9"


@pytest.mark.parametrize("command_id", ["", "has space", "a/b", "-x", "x" * 129, 17, None, ["cmd"]])
def test_a_bad_command_id_is_refused_and_not_reported(command_id: Any) -> None:
    error = refused({**DEPOSIT, "command_id": command_id})
    assert "command_id" in error.detail
    assert error.command_id is None


def test_the_command_id_is_reported_only_when_readable() -> None:
    # Readable: every refusal after that carries it.
    assert refused({**DEPOSIT, "amount": "x"}).command_id == "cmd-dep-1"
    assert refused({"command_id": "just-an-id"}).command_id == "just-an-id"
    # Unreadable: no id to report under, whatever else is wrong.
    assert refused({**DEPOSIT, "command_id": "bad id", "amount": "x"}).command_id is None
    assert refused({"type": "DEPOSIT"}).command_id is None


def test_command_ids_up_to_128_url_safe_characters_are_read() -> None:
    longest = "c" * 128
    assert parse_command({**DEPOSIT, "command_id": longest}).command_id == longest
    odd = "0A.b_c~d:e@f+g=h-i"
    assert parse_command({**DEPOSIT, "command_id": odd}).command_id == odd


# Python's ``$`` also matches before a trailing newline, so ``re.match(r"^...$", v)``
# would accept "EUR\n". The patterns are whole-string (URL-safe ids, ISO codes).
@pytest.mark.parametrize(
    ("example", "name", "value"),
    [
        (CREATE, "currency", "EUR\n"),
        (DEPOSIT, "account_id", "acc-1\n"),
        (TRANSFER, "to_account_id", "acc-2\n"),
        (DEPOSIT, "command_id", "cmd-dep-1\n"),
    ],
    ids=["currency", "account_id", "to_account_id", "command_id"],
)
def test_a_trailing_newline_is_refused(example: dict[str, Any], name: str, value: str) -> None:
    refused({**example, name: value})


# -- the wire form --------------------------------------------------------------------

ROUND_TRIP_COMMANDS = [
    CreateAccount(command_id="c1", account_id="a1", owner="Bob", currency="USD"),
    CreateAccount(
        command_id="c2",
        account_id="a1",
        owner="Bob",
        currency="USD",
        overdraft_limit=1_000,
        expected_version=0,
    ),
    Deposit(command_id="c3", account_id="a1", amount=5),
    Deposit(command_id="c3b", account_id="a1", amount=0, expected_version=4),
    Withdraw(command_id="c4", account_id="a1", amount=-5),
    TransferMoney(command_id="c5", account_id="a1", to_account_id="a2", amount=7),
    CloseAccount(command_id="c6", account_id="a1", expected_version=9),
    CreditTransfer(
        command_id="c5", account_id="a2", from_account_id="a1", amount=7, currency="USD"
    ),
    RefundTransfer(
        command_id="c5", account_id="a1", to_account_id="a2", amount=7, reason="CURRENCY_MISMATCH"
    ),
    SettleTransfer(command_id="c5", account_id="a1", to_account_id="a2", amount=7),
]


@pytest.mark.parametrize("command", ROUND_TRIP_COMMANDS, ids=repr)
def test_to_dict_round_trips_through_parse_command(command: Any) -> None:
    data = command.to_dict()
    assert data["type"] == command.type
    assert parse_command(data) == command
    assert type(parse_command(data)) is type(command)
    if command.expected_version is None:
        assert "expected_version" not in data  # null fields are left out of the wire form
    else:
        assert data["expected_version"] == command.expected_version


def test_to_dict_is_plain_json() -> None:
    assert TransferMoney(
        command_id="c5", account_id="a1", to_account_id="a2", amount=7
    ).to_dict() == {
        "type": "TRANSFER_MONEY",
        "command_id": "c5",
        "account_id": "a1",
        "to_account_id": "a2",
        "amount": 7,
    }
