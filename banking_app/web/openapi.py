"""``GET /openapi.json``: an OpenAPI 3.1 description of exactly the endpoints served.

Kept beside the views and checked against them by a schemathesis run in the tests, so
the description cannot drift from the behaviour.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response

from banking_app import __version__
from banking_app.domain.commands import ACCOUNT_ID_RE, COMMAND_ID_RE, CURRENCY_RE, MAX_AMOUNT
from banking_app.domain.errors import Reason
from banking_app.runtime.faust_app import app
from banking_app.web.base import ApiView
from banking_app.web.problems import PROBLEM_JSON
from banking_app.web.validation import MAX_WAIT_SECONDS

ACCOUNT_ID = {"type": "string", "pattern": ACCOUNT_ID_RE.pattern}
COMMAND_ID = {"type": "string", "pattern": COMMAND_ID_RE.pattern}
AMOUNT = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_AMOUNT,
    "description": "Minor units (cents), written as a JSON integer: 100, not 100.0.",
}
LIMIT = {
    "type": ["integer", "null"],
    "minimum": 0,
    "maximum": MAX_AMOUNT,
    "description": "Minor units per UTC day; null or left out: no limit.",
}
VERSION = {
    "type": ["integer", "null"],
    "minimum": 0,
    "maximum": 2**63 - 1,
    "description": "The account's version must equal this, or VERSION_CONFLICT.",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": ref("Problem")}}}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


COMMAND_PARAMETERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": COMMAND_ID,
        "description": "Becomes the command id; the same key is never applied twice.",
    },
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
        "description": "Wait for the terminal outcome.",
    },
    {
        "name": "timeout",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_SECONDS},
        "description": "Seconds to wait at most (default 10).",
    },
]
COMMAND_RESPONSES = {
    "200": json_response("The command's terminal outcome: accepted.", ref("CommandResult")),
    "202": json_response(
        "The command is on the commands topic; its outcome is pending.", ref("CommandPending")
    ),
    "400": problem("Malformed JSON or a field that fails validation."),
    "401": problem("A bearer token is configured and was not given."),
    "422": problem("The command was rejected; `reason` says why."),
    "503": problem(
        "Kafka, the read model, or the worker holding the command's outcome is not "
        "available; retry with the same key."
    ),
    "504": problem(
        "The worker holding the command's outcome did not answer in time "
        "(BANKING_FORWARD_TIMEOUT); retry with the same key."
    ),
}


def command_operation(
    summary: str, schema: dict[str, Any], path_param: bool = False, body_required: bool = True
) -> dict[str, Any]:
    parameters = list(COMMAND_PARAMETERS)
    if path_param:
        parameters.insert(
            0, {"name": "account_id", "in": "path", "required": True, "schema": ACCOUNT_ID}
        )
    return {
        "post": {
            "summary": summary,
            "parameters": parameters,
            "requestBody": body(schema, body_required),
            "responses": COMMAND_RESPONSES,
        }
    }


def query_operation(
    summary: str, name: str, schema: dict[str, Any], extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    pattern = ACCOUNT_ID if name == "account_id" else COMMAND_ID
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": pattern},
                *(extra or []),
            ],
            "responses": {
                "200": json_response("Found.", schema),
                "400": problem("A query parameter fails validation."),
                "401": problem("Reads need a bearer token (BANKING_API_TOKEN_READS=1)."),
                "404": problem("Not known to the read model."),
                "503": problem(
                    "The read model is not assigned to a worker yet, or the worker "
                    "holding the key cannot be reached."
                ),
                "504": problem(
                    "The worker holding the key did not answer in time (BANKING_FORWARD_TIMEOUT)."
                ),
            },
        }
    }


#: The rules of ``banking_app.risk.rules.Rule`` (the web layer imports no service; a test
#: holds the two equal).
ALERT_RULES = ("large_movement", "velocity", "pass_through", "fan_out", "probing")

EVENT = {
    "type": "object",
    "required": ["type", "event_id", "command_id", "account_id", "occurred_at", "schema_version"],
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "banking-app",
        "version": __version__,
        "description": "An event-sourced bank on Kafka. Money is in integer minor units.",
    },
    "paths": {
        "/accounts": command_operation(
            "Open an account",
            obj(
                {
                    "account_id": ACCOUNT_ID,
                    "owner": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
                    "currency": {"type": "string", "pattern": CURRENCY_RE.pattern},
                    "overdraft_limit": {
                        "type": ["integer", "null"],
                        "minimum": 0,
                        "maximum": MAX_AMOUNT,
                    },
                    "daily_withdrawal_limit": LIMIT,
                    "daily_transfer_limit": LIMIT,
                    "expected_version": VERSION,
                },
                ["owner", "currency"],
            ),
        ),
        "/accounts/{account_id}/deposits": command_operation(
            "Deposit", obj({"amount": AMOUNT, "expected_version": VERSION}, ["amount"]), True
        ),
        "/accounts/{account_id}/withdrawals": command_operation(
            "Withdraw", obj({"amount": AMOUNT, "expected_version": VERSION}, ["amount"]), True
        ),
        "/accounts/{account_id}/close": command_operation(
            "Close an account (zero balance, nothing in flight)",
            obj({"expected_version": VERSION}),
            True,
            body_required=False,
        ),
        "/accounts/{account_id}/limits": command_operation(
            "Set the daily limits (both; {} lifts them)",
            obj(
                {
                    "daily_withdrawal_limit": LIMIT,
                    "daily_transfer_limit": LIMIT,
                    "expected_version": VERSION,
                }
            ),
            True,
        ),
        "/transfers": command_operation(
            "Transfer between two accounts",
            obj(
                {
                    "from_account_id": ACCOUNT_ID,
                    "to_account_id": ACCOUNT_ID,
                    "amount": AMOUNT,
                    "expected_version": VERSION,
                },
                ["from_account_id", "to_account_id", "amount"],
            ),
        ),
        "/accounts/{account_id}": query_operation("An account", "account_id", ref("Account")),
        "/accounts/{account_id}/transactions": query_operation(
            "An account's history, newest first",
            "account_id",
            ref("History"),
            [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
                {
                    "name": "before_seq",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**53},
                },
            ],
        ),
        "/commands/{command_id}": query_operation(
            "A command's outcome", "command_id", ref("Outcome")
        ),
        "/accounts/{account_id}/alerts": query_operation(
            "An account's alerts (its latest 100), in the order raised",
            "account_id",
            ref("AccountAlerts"),
        ),
        "/alerts": {
            "get": {
                "summary": "The bank's alerts raised at or after a time, oldest first",
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "ISO 8601 (UTC when no zone is given); compared "
                        "with each alert's raised_at. Left out: every alert.",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "description": "At most this many alerts (default 100).",
                    },
                    {
                        "name": "scope",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["bank", "local"]},
                        "description": "local: only the partitions of the worker asked "
                        "(what workers ask each other); bank (default): all of them.",
                    },
                ],
                "responses": {
                    "200": json_response("Found.", ref("AlertList")),
                    "400": problem("A query parameter fails validation."),
                    "401": problem("Reads need a bearer token (BANKING_API_TOKEN_READS=1)."),
                    "503": problem(
                        "The alerts are not assigned to a worker yet, or a worker holding "
                        "some cannot be reached."
                    ),
                    "504": problem(
                        "A worker holding some alerts did not answer in time "
                        "(BANKING_FORWARD_TIMEOUT)."
                    ),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    "200": json_response("Ready.", ref("Health")),
                    "503": json_response("Starting, or an agent is stalled.", ref("Health")),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": json_response("OpenAPI 3.1.", {"type": "object"})},
            }
        },
    },
    "components": {
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "reason": {"type": "string", "enum": [r.value for r in Reason]},
                    "command_id": {"type": "string"},
                    "events": {"type": "array", "items": EVENT},
                },
            },
            "CommandPending": {
                "type": "object",
                "required": ["command_id", "status"],
                "properties": {
                    "command_id": {"type": "string"},
                    "account_id": {"type": "string"},
                    "status": {"const": "pending"},
                },
            },
            "CommandResult": {
                "type": "object",
                "required": ["command_id", "status", "events"],
                "properties": {
                    "command_id": {"type": "string"},
                    "account_id": {"type": "string"},
                    "status": {"const": "accepted"},
                    "events": {"type": "array", "items": EVENT},
                },
            },
            "Outcome": {
                "type": "object",
                "required": ["command_id", "status", "events"],
                "properties": {
                    "command_id": {"type": "string"},
                    "status": {"enum": ["pending", "accepted", "rejected"]},
                    "reason": {"type": "string"},
                    "events": {"type": "array", "items": EVENT},
                },
            },
            "Account": {
                "type": "object",
                "required": [
                    "account_id",
                    "owner",
                    "currency",
                    "balance",
                    "status",
                    "version",
                    "overdraft_limit",
                    "daily_withdrawal_limit",
                    "daily_transfer_limit",
                    "in_flight",
                    "created_at",
                    "updated_at",
                ],
                "properties": {
                    "account_id": {"type": "string"},
                    "owner": {"type": "string"},
                    "currency": {"type": "string"},
                    "balance": {"type": "integer"},
                    "status": {"enum": ["OPEN", "CLOSED"]},
                    "version": {"type": "integer"},
                    "overdraft_limit": {"type": "integer"},
                    "daily_withdrawal_limit": {"type": ["integer", "null"]},
                    "daily_transfer_limit": {"type": ["integer", "null"]},
                    "in_flight": {"type": "integer"},
                    "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                },
            },
            "History": {
                "type": "object",
                "required": ["account_id", "items", "next_before_seq"],
                "properties": {
                    "account_id": {"type": "string"},
                    "next_before_seq": {"type": ["integer", "null"]},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": [
                                "seq",
                                "type",
                                "amount",
                                "balance",
                                "command_id",
                                "occurred_at",
                            ],
                            "properties": {
                                "seq": {"type": "integer"},
                                "type": {"type": "string"},
                                "amount": {"type": "integer"},
                                "balance": {"type": "integer"},
                                "command_id": {"type": "string"},
                                "counterparty_account_id": {"type": "string"},
                                "reason": {"type": "string"},
                                "occurred_at": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "Alert": {
                "type": "object",
                "required": [
                    "alert_id",
                    "rule",
                    "account_id",
                    "severity",
                    "window",
                    "evidence",
                    "raised_at",
                ],
                "properties": {
                    "alert_id": {
                        "type": "string",
                        "description": "Deterministic: the same case always has this id.",
                    },
                    "rule": {"enum": list(ALERT_RULES)},
                    "account_id": {"type": "string"},
                    "severity": {"enum": ["medium", "high"]},
                    "window": {
                        "type": "object",
                        "required": ["start", "end"],
                        "properties": {
                            "start": {"type": "string"},
                            "end": {"type": "string"},
                        },
                    },
                    "evidence": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "The event ids that make the case.",
                    },
                    "raised_at": {
                        "type": "string",
                        "description": "The occurred_at of the event that raised it.",
                    },
                    "facts": {"type": "object"},
                    "detail": {"type": "string"},
                },
            },
            "AccountAlerts": {
                "type": "object",
                "required": ["account_id", "alerts"],
                "properties": {
                    "account_id": {"type": "string"},
                    "alerts": {"type": "array", "items": ref("Alert")},
                },
            },
            "AlertList": {
                "type": "object",
                "required": ["since", "alerts", "truncated"],
                "properties": {
                    "since": {"type": ["string", "null"]},
                    "alerts": {"type": "array", "items": ref("Alert")},
                    "truncated": {"type": "boolean"},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"enum": ["ready", "starting", "stalled"]},
                    "stalled": {
                        "type": "array",
                        "description": "When stalled: each agent's topic with records "
                        "waiting and no take handled for BANKING_STALL_SECONDS.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "topic": {"type": "string"},
                                "lag": {"type": "integer"},
                                "seconds": {"type": "number"},
                            },
                        },
                    },
                    "recovery": {
                        "type": "object",
                        "description": "While starting: what the bulk restore and then "
                        "Faust's recovery of the worker's partitions have left to read.",
                        "properties": {
                            "bulk_restore": {
                                "type": "object",
                                "properties": {
                                    "running": {"type": "boolean"},
                                    "partitions_left": {"type": "integer"},
                                    "records_left": {"type": "integer"},
                                },
                            },
                            "changelogs": {
                                "type": "object",
                                "properties": {
                                    "partitions_left": {"type": "integer"},
                                    "records_left": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


@app.page("/openapi.json")
class OpenApi(ApiView):
    route = "/openapi.json"
    open_to_all = True

    async def get(self, request: Request) -> Response:
        return self.json(SPEC)
