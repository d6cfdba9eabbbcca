"""Property-based HTTP fuzzing of a real worker, driven by the worker's own ``/openapi.json``.

schemathesis reads the document the worker serves and, for every operation in it, sends
requests that fit the document (positive) and requests that break it on purpose
(negative), in three phases: the document's examples, deterministic boundary cases
("coverage") and random cases ("fuzzing"). Every response must be:

- not a 5xx (``not_a_server_error``);
- a status code the operation documents (``status_code_conformance``);
- of a content type documented for that status (``content_type_conformance``);
- a body that fits the documented schema (``response_schema_conformance``).

The POST operations open accounts and move money on the shared session worker. The
coverage phase uses fixed values (account ``0``, ``Idempotency-Key: 0``), so a case may
meet an account or a key an earlier case made; every answer to that is documented too.

``?wait=true`` with a ``timeout`` of up to 60 s is left to schemathesis as generated: the
worker answers as soon as the outcome is projected (a few ms here; the whole run is a few
hundred requests and takes seconds), so the timeout is only an upper bound. The HTTP
client's own timeout is above the API's longest wait, so a stalled worker fails a case
rather than hanging the run.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.cluster import Worker

pytestmark = pytest.mark.kafka

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Above the API's longest wait (``timeout`` at most 60 s) so the server answers first.
HTTP_TIMEOUT = 90.0
#: Fuzzing examples per operation; the coverage phase adds its own boundary cases.
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(worker: Worker) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{worker.url}/openapi.json", timeout=HTTP_TIMEOUT)


@pytest.fixture()
def schemathesis_nodeid_shim(request: pytest.FixtureRequest) -> None:
    """Let ``from_fixture(...).parametrize()`` run on pytest >= 9.2.

    schemathesis (4.32.5) reads and renames ``request.node._nodeid`` to label each
    operation's subtest; pytest 9.2 stores the node id as ``_id`` and has no ``_nodeid``,
    so the lazy test fails with ``AttributeError`` before sending a request. Giving the
    node the attribute restores it; the per-operation label is then only cosmetic. Harmless
    once either side changes.
    """
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@pytest.mark.usefixtures("schemathesis_nodeid_shim")
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # a shared 2-core machine: no timing assertions
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=HTTP_TIMEOUT)


# --- The document itself -------------------------------------------------------------------

#: Matches both the account id and the command id patterns.
PROBE_ID = "fuzz-probe"
#: Bodies that fit each POST operation, so a probe reaches the view's real work.
PROBE_BODIES: dict[str, dict[str, Any]] = {
    "/accounts": {"owner": "fuzz probe", "currency": "EUR"},
    "/accounts/{account_id}/deposits": {"amount": 1},
    "/accounts/{account_id}/withdrawals": {"amount": 1},
    "/accounts/{account_id}/close": {},
    "/transfers": {"from_account_id": "fuzz-probe-a", "to_account_id": "fuzz-probe-b", "amount": 1},
}


def _documented_operations(api_schema: schemathesis.BaseSchema) -> list[tuple[str, str, Any]]:
    """(method, path, operation object) for every operation in the served document."""
    return [
        (method, path, operation)
        for path, item in api_schema.raw_schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    ]


def test_document_is_valid_openapi_31(api_schema: schemathesis.BaseSchema) -> None:
    assert api_schema.raw_schema["openapi"].startswith("3.1.")
    api_schema.validate()  # against the OpenAPI 3.1 meta-schema; raises when invalid
    # Every operation resolves (``.ok()`` raises on one that does not), and all of them
    # are fuzzed except the document itself, which schemathesis leaves out.
    fuzzed = {(op.method, op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    documented = {(method, path) for method, path, _ in _documented_operations(api_schema)}
    assert fuzzed == documented - {("get", "/openapi.json")}


def test_every_documented_operation_is_served(
    worker: Worker, api_schema: schemathesis.BaseSchema
) -> None:
    """Each documented operation reaches its view, not the router's plain-text 404/405."""
    unserved = []
    for method, template, operation in _documented_operations(api_schema):
        path = template.replace("{account_id}", PROBE_ID).replace("{command_id}", PROBE_ID)
        response = requests.request(
            method.upper(),
            f"{worker.url}{path}",
            json=PROBE_BODIES.get(template),
            timeout=HTTP_TIMEOUT,
        )
        documented = {int(code) for code in operation["responses"]}
        content_type = response.headers.get("Content-Type", "")
        routed = not (response.status_code in (404, 405) and content_type.startswith("text/"))
        if not routed or response.status_code not in documented:
            unserved.append(
                f"{method.upper()} {path}: {response.status_code} {response.text[:200]!r}"
            )
    assert not unserved


# --- Where the document and the server disagreed --------------------------------------


def _post(worker: Worker, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{worker.url}{path}", json=body, timeout=HTTP_TIMEOUT)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/accounts", {"owner": "fuzz", "currency": "EUR\n"}),
        ("/accounts", {"owner": "fuzz", "currency": "EUR", "account_id": "fuzz-nl\n"}),
        ("/accounts/{account_id}%0A/deposits", {"amount": 1}),
    ],
    ids=["currency", "account_id-in-body", "account_id-in-path"],
)
def test_a_trailing_newline_is_refused(worker: Worker, path: str, body: dict[str, Any]) -> None:
    """The document's patterns are ECMA-262, where '$' does not match before a final
    newline; Python's ``re.match`` with '$' does, which once let 'EUR\\n' through."""
    account_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    response = _post(worker, path.replace("{account_id}", account_id), body)
    assert response.status_code == 400, response.text


def test_expected_version_bounds_match_the_document(worker: Worker) -> None:
    """The document's maximum is the server's: the largest value passes validation."""
    spec = requests.get(f"{worker.url}/openapi.json", timeout=30).json()
    body = spec["paths"]["/accounts/{account_id}/deposits"]["post"]["requestBody"]
    maximum = body["content"]["application/json"]["schema"]["properties"]["expected_version"][
        "maximum"
    ]
    account_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    path = f"/accounts/{account_id}/deposits"
    accepted = _post(worker, path, {"amount": 1, "expected_version": maximum})
    assert accepted.status_code == 202, accepted.text
    refused = _post(worker, path, {"amount": 1, "expected_version": maximum + 1})
    assert refused.status_code == 400, refused.text


def test_router_errors_are_problem_documents(worker: Worker) -> None:
    unknown = requests.get(f"{worker.url}/nope", timeout=30)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["status"] == 404
    wrong_method = requests.delete(f"{worker.url}/accounts", timeout=30)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"].startswith("application/problem+json")
    assert "POST" in wrong_method.headers["Allow"]
