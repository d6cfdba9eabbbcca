"""Which allocator a worker is executed on, decided before Python allocates anything."""

from __future__ import annotations

import pytest

from banking_app.operations.allocator import (
    CHOSEN,
    DEFAULT_CONF,
    AllocatorError,
    for_workers,
    worker_environment,
)

JEMALLOC = "libjemalloc.so.2"


def test_a_worker_is_executed_again_on_jemalloc() -> None:
    environ = {"PATH": "/usr/bin"}
    env = worker_environment(environ, ["--datadir", "d", "worker", "-l", "info"], JEMALLOC)
    assert env == {
        "PATH": "/usr/bin",
        "LD_PRELOAD": JEMALLOC,
        "MALLOC_CONF": DEFAULT_CONF,
        CHOSEN: "jemalloc",
    }
    assert environ == {"PATH": "/usr/bin"}  # the caller's environment is not changed


def test_the_operator_s_preloads_and_jemalloc_options_are_kept() -> None:
    environ = {"LD_PRELOAD": "libfoo.so", "MALLOC_CONF": "narenas:2"}
    env = worker_environment(environ, ["worker"], JEMALLOC)
    assert env is not None
    assert env["LD_PRELOAD"] == f"{JEMALLOC} libfoo.so"
    assert env["MALLOC_CONF"] == "narenas:2"


@pytest.mark.parametrize(
    ("environ", "argv", "found"),
    [
        ({}, ["audit"], JEMALLOC),  # not a worker: a short command runs as it is
        ({}, ["--help"], JEMALLOC),
        ({"BANKING_ALLOCATOR": "glibc"}, ["worker"], JEMALLOC),
        ({CHOSEN: "jemalloc"}, ["worker"], JEMALLOC),  # executed once, never again
        ({"LD_PRELOAD": "/opt/libjemalloc.so"}, ["worker"], JEMALLOC),  # already on it
        ({}, ["worker"], ""),  # not installed: glibc's malloc
    ],
)
def test_otherwise_the_worker_runs_as_it_is(
    environ: dict[str, str], argv: list[str], found: str
) -> None:
    assert worker_environment(environ, argv, found) is None


@pytest.mark.parametrize("value", ["tcmalloc", "JEMALLOC", "jemalloc; rm -rf /", " "])
def test_an_unknown_allocator_is_refused_by_name(value: str) -> None:
    with pytest.raises(AllocatorError, match=r"BANKING_ALLOCATOR=.*expected one of"):
        worker_environment({"BANKING_ALLOCATOR": value}, ["worker"], JEMALLOC)


def test_an_empty_setting_is_the_default() -> None:
    env = worker_environment({"BANKING_ALLOCATOR": ""}, ["worker"], JEMALLOC)
    assert env is not None and env["LD_PRELOAD"] == JEMALLOC


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "jemalloc"),
        ({"BANKING_ALLOCATOR": "glibc"}, "glibc"),
    ],
)
def test_the_benchmark_reports_the_workers_allocator(
    environ: dict[str, str], expected: str
) -> None:
    assert for_workers(environ) == expected
