"""The command line's start-up choices, made before Faust is imported."""

from __future__ import annotations

import pytest

from banking_app.operations.launcher import datadir_option, default_loop


def test_uvloop_is_the_default_loop() -> None:
    environ: dict[str, str] = {}
    default_loop(environ, ["worker", "-l", "info"])
    assert environ == {"FAUST_LOOP": "uvloop"}


@pytest.mark.parametrize(
    ("environ", "argv"),
    [
        ({"FAUST_LOOP": "aio"}, ["worker"]),
        ({"F_LOOP": "aio"}, ["worker"]),
        ({}, ["-L", "aio", "worker"]),
        ({}, ["--loop", "aio", "worker"]),
        ({}, ["--loop=aio", "worker"]),
    ],
)
def test_a_chosen_loop_is_kept(environ: dict[str, str], argv: list[str]) -> None:
    before = dict(environ)
    default_loop(environ, argv)
    assert environ == before


def test_no_uvloop_no_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    environ: dict[str, str] = {}
    default_loop(environ, ["worker"])
    assert environ == {}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--datadir", "/d", "worker"], "/d"),
        (["--datadir=/d", "worker"], "/d"),
        (["-D", "/d", "worker"], "/d"),
        (["worker", "--datadir", "/d"], None),
        (["worker"], None),
    ],
)
def test_datadir_is_a_global_option(argv: list[str], expected: str | None) -> None:
    assert datadir_option(argv) == expected
