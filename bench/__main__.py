"""``python -m bench`` (or ``make bench``): the benchmark of record.

Starts a broker (Apache Kafka where Java 17 is present, else the embedded Tansu; or
each of ``--broker kafka,tansu`` in turn) and a worker, then measures in one run, so every figure is
comparable: deposits/s and transfers/s end to end (first send until the read model shows
the last outcome), query latency under the deposit load, the two baselines, and growth
with the number of accounts. Prints a table and writes docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from banking_app.operations import apache_kafka
from banking_app.runtime.settings import ROLES
from bench.report import write_report
from bench.scenarios import BROKER_NAMES, Config, log, run_all


def brokers(asked: str) -> tuple[list[str], Path | None]:
    """The brokers to run on, and Kafka's jars when one of them is Kafka. ``auto``:
    Kafka where Java 17 and its jars are at hand (fetched once), Tansu otherwise."""
    kinds = [kind.strip() for kind in asked.split(",") if kind.strip()]
    if kinds == ["auto"]:
        kinds = ["kafka" if apache_kafka.java_available() else "tansu"]
    unknown = set(kinds) - set(BROKER_NAMES)
    if unknown or not kinds:
        raise SystemExit(f"--broker: kafka, tansu or both, comma-separated; not {asked!r}")
    if "kafka" not in kinds:
        return kinds, None
    try:
        libs = apache_kafka.ensure_kafka_libs()
    except apache_kafka.KafkaError as exc:
        if asked != "auto":
            raise SystemExit(f"--broker kafka cannot run: {exc}") from None
        log(f"Apache Kafka cannot run ({exc}); measuring on Tansu")
        return ["tansu"], None
    return kinds, libs


def growth_roles(raw: str) -> tuple[str, ...]:
    """``--growth-roles``: each a worker role; a layout with no reader has no queries."""
    roles = tuple(role.strip() for role in raw.split(",") if role.strip())
    if not roles or any(role not in ROLES or role == "command" for role in roles):
        raise SystemExit(f"--growth-roles: all, processor or query, comma-separated; got {raw!r}")
    if not {"all", "query"} & set(roles) or not {"all", "processor"} & set(roles):
        raise SystemExit(f"--growth-roles {raw!r}: a layout needs a processor and a reader")
    return roles


def parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke test that runs in under a minute"
    )
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--deposits", type=int, default=None)
    parser.add_argument("--transfers", type=int, default=None)
    parser.add_argument("--query-rate", type=float, default=500.0)
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="times the deposits, transfers and baselines are measured; medians are "
        "reported (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--growth",
        default=None,
        help="comma-separated account counts (default 1000,100000,1000000)",
    )
    parser.add_argument("--growth-deposits", type=int, default=None)
    parser.add_argument(
        "--broker",
        default="auto",
        help="kafka, tansu, or kafka,tansu for both in one run (the growth runs on the "
        "first); default: kafka where Java 17 is present, else tansu",
    )
    parser.add_argument(
        "--alerts-compare",
        action="store_true",
        help="in each trial, also run the deposits with the alert agent on and off "
        "(BANKING_ALERTS) and report the drop and the agent's cost per event",
    )
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="in place of the main phase, compare the layouts of issue 16 on the first "
        "broker: one worker, two workers, and an event processor beside a query service",
    )
    parser.add_argument(
        "--growth-roles",
        default="all",
        help="the growth phase's workers, by role, comma-separated: all (one worker, the "
        "default) or processor,query (the split)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="markdown report to write (default docs/BENCHMARKS.md; '-' none)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    config = Config(
        quick=quick,
        accounts=args.accounts or (100 if quick else 10_000),
        deposits=args.deposits or (1_000 if quick else 50_000),
        transfers=args.transfers or (300 if quick else 20_000),
        query_rate=args.query_rate,
        growth=[
            int(n)
            for n in (
                args.growth
                if args.growth is not None
                else ("300" if quick else "1000,100000,1000000")
            ).split(",")
            if n
        ],
        growth_deposits=args.growth_deposits or (500 if quick else 20_000),
        trials=max(1, args.trials or (1 if quick else 3)),
        alerts_compare=args.alerts_compare,
        layouts=args.layouts,
        growth_roles=growth_roles(args.growth_roles),
    )
    config.brokers, config.kafka_libs = brokers(args.broker)
    config.output = args.output or ("-" if quick else "docs/BENCHMARKS.md")
    return config


def main(argv: list[str]) -> int:
    config = parse(argv)
    # Stopped like Ctrl-C (as `timeout` or a CI runner stops it), so the broker and
    # workers it started are stopped too rather than left running under later runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = asyncio.run(run_all(config))
    text = write_report(config, results)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
