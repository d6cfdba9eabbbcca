"""Header values no client should send, at the functions that read them.

aiohttp decodes header bytes that are not UTF-8 to lone surrogates ("\\udce9" for a
Latin-1 "é"); encoding such a value the usual way raises UnicodeEncodeError, which was a
500. Every header the API reads must answer 400 or 401 instead (the HTTP tests send the
same bytes over the wire).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from banking_app.web import base, validation
from banking_app.web.problems import Problem

HOSTILE_KEYS = ["\udce9", "é", "a\udcff", "", " ", "k" * 129, "\ud800"]


def request(**headers: str) -> Any:
    return SimpleNamespace(method="POST", headers=headers)


@pytest.mark.parametrize("key", HOSTILE_KEYS)
@pytest.mark.parametrize("read", [validation.command_id, validation.new_account_id])
def test_an_idempotency_key_that_is_no_command_id_is_a_400(read: Any, key: str) -> None:
    with pytest.raises(Problem) as raised:
        read(request(**{"Idempotency-Key": key}))
    assert (raised.value.status, raised.value.slug) == (400, "validation")
    assert "Idempotency-Key must match" in raised.value.detail


def test_a_valid_idempotency_key_names_the_command_and_the_account() -> None:
    keyed = request(**{"Idempotency-Key": "key-1"})
    assert validation.command_id(keyed) == "key-1"
    assert validation.new_account_id(keyed) == validation.new_account_id(keyed)
    assert validation.command_id(request()) != validation.command_id(request())


@pytest.mark.parametrize(
    "header",
    ["Bearer s3cr\udce9t", "Bearer \udcff", "Bearer \ud800", "Bearer é", "B\udce9arer s3cret"],
)
def test_an_authorization_header_of_other_bytes_is_not_authorised(
    monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    monkeypatch.setattr(base, "settings", dataclasses.replace(base.settings, api_token="s3cret"))
    assert base.authorised(request(Authorization=header)) is False
    assert base.authorised(request(Authorization="Bearer s3cret")) is True


def test_a_token_of_non_ascii_characters_is_compared_as_utf8(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "settings", dataclasses.replace(base.settings, api_token="sé"))
    # What aiohttp makes of the UTF-8 bytes of "sé": the same text.
    assert base.authorised(request(Authorization="Bearer sé")) is True
    # What it makes of the Latin-1 byte of "é": a surrogate, not the token.
    assert base.authorised(request(Authorization="Bearer s\udce9")) is False


def test_a_token_of_other_bytes_is_compared_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """os.environ decodes bytes that are not UTF-8 as aiohttp does: to lone surrogates."""
    token = "s\udce9"  # BANKING_API_TOKEN=$'s\xe9'
    monkeypatch.setattr(base, "settings", dataclasses.replace(base.settings, api_token=token))
    assert base.authorised(request(Authorization="Bearer s\udce9")) is True
    assert base.authorised(request(Authorization="Bearer sé")) is False
