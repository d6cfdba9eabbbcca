"""The benchmark's report: a table on stdout and docs/BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

from banking_app.settings import settings
from bench.scenarios import Config, same_loop_env

TARGETS = "3,000 deposits/s and >= 0.3 x baseline (a); 1,500 transfers/s; query p99 <= 10 ms"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        mem = f"{int(memory) / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        mem = "?"
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def _q(stats: dict[str, Any]) -> str:
    if not stats.get("requests"):
        return "no requests"
    return (
        f"p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms, "
        f"max {stats['max_ms']:.1f} ms, {stats['errors']} errors of {stats['requests']}"
    )


def write_report(config: Config, r: dict[str, Any]) -> str:
    raw, naive = r["raw_per_s"], r["naive_per_s"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); every figure below comes from one run, "
        "on one machine, with the embedded broker (Tansu, memory storage) and the worker "
        "sharing its cores. Rates are end to end: from the first command sent until the read "
        "model shows the last outcome (baselines: until their last output record is on the "
        "broker).",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- settings: {config.accounts} accounts, {config.deposits} deposits, "
        f"{config.transfers} transfers, queries at {config.query_rate:.0f}/s, "
        f"8 partitions, batch {settings.batch_size}, "
        f"event loop {same_loop_env().get('FAUST_LOOP', 'aio')} (worker and baselines)"
        + (" (quick mode)" if config.quick else ""),
        f"- targets (issue 5): {TARGETS}",
        "",
        "| measure | result | ratio |",
        "|---|---|---|",
        f"| worker ready after start | {r['ready_s']:.1f} s | |",
        f"| accounts opened | {r['open_per_s']:,.0f} /s | |",
        f"| deposits, full semantics | {r['deposits_per_s']:,.0f} /s | "
        f"{r['deposits_per_s'] / raw:.2f} x (a), {r['deposits_per_s'] / naive:.2f} x (b) |",
        f"| cross-partition transfers | {r['transfers_per_s']:,.0f} /s | "
        f"{r['transfers_per_s'] / raw:.2f} x (a) |",
        f"| queries during deposits | {_q(r['queries'])} | |",
        f"| baseline (a): raw aiokafka consume-produce | {raw:,.0f} /s | 1 |",
        f"| baseline (b): naive Faust agent | {naive:,.0f} /s | {naive / raw:.2f} x (a) |",
        f"| worker peak RSS | {r['peak_rss_mib']:.0f} MiB | |",
        f"| `replay --verify` after the load | {r['verify']} | |",
        "",
        "## Growth",
        "",
        "| accounts | opened /s | deposits /s | queries during deposits | "
        "recovery, empty data dir | restart, same data dir | peak RSS | RSS after recovery |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in r["growth"]:
        lines.append(
            f"| {g['accounts']:,} | {g['open_per_s']:,.0f} | {g['deposits_per_s']:,.0f} | "
            f"{_q(g['queries'])} | {g['recovery_fresh_s']:.1f} s | "
            f"{g['restart_same_dir_s']:.1f} s | {g['peak_rss_mib']:.0f} MiB | "
            f"{g['recovered_rss_mib']:.0f} MiB |"
        )
    text = "\n".join(lines) + "\n"
    if config.output != "-":
        path = Path(config.output)
        previous = path.read_text() if path.exists() else ""
        notes = previous.split("<!-- notes -->", 1)[1] if "<!-- notes -->" in previous else "\n"
        path.write_text(text + "\n<!-- notes -->" + notes)
    return text
