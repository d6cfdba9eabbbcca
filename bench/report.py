"""The benchmark's report: a table on stdout and docs/BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from banking_app.operations import allocator, priority
from banking_app.runtime.settings import settings
from bench.scenarios import BROKER_NAMES, Config, same_loop_env

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


def _rate(values: list[float]) -> str:
    """The median rate, with the range when there were several trials."""
    text = f"{statistics.median(values):,.0f} /s"
    if len(values) > 1:
        text += f" (median of {len(values)}: {min(values):,.0f} to {max(values):,.0f})"
    return text


def _ratio(trials: list[dict[str, Any]], measure: str, baseline: str) -> float:
    """The median of the trials' ratios: each trial's pair ran minutes apart."""
    return statistics.median(t[measure] / t[baseline] for t in trials)


def _measured(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The query figures of the trials whose load made requests."""
    return [t["queries"] for t in trials if t["queries"].get("requests")]


def _queries(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Every trial's query load at once: median p50 and p99, the worst max, all errors."""
    measured = _measured(trials)
    if not measured:
        return {"requests": 0}
    return {
        "requests": sum(q["requests"] for q in measured),
        "errors": sum(q["errors"] for q in measured),
        "p50_ms": statistics.median(q["p50_ms"] for q in measured),
        "p99_ms": statistics.median(q["p99_ms"] for q in measured),
        "max_ms": max(q["max_ms"] for q in measured),
    }


def _p99s(trials: list[dict[str, Any]]) -> str:
    if len(trials) < 2:
        return ""
    return (
        " (p99 of each trial: "
        + ", ".join(f"{q['p99_ms']:.1f}" for q in _measured(trials))
        + " ms)"
    )


def _main_table(r: dict[str, Any]) -> list[str]:
    trials = r["trials"]
    raw = [t["raw_per_s"] for t in trials]
    naive = [t["naive_per_s"] for t in trials]
    return [
        "| measure | result | ratio |",
        "|---|---|---|",
        f"| worker ready after start | {r['ready_s']:.1f} s | |",
        f"| accounts opened | {r['open_per_s']:,.0f} /s | |",
        f"| deposits, full semantics | {_rate([t['deposits_per_s'] for t in trials])} | "
        f"{_ratio(trials, 'deposits_per_s', 'raw_per_s'):.2f} x (a), "
        f"{_ratio(trials, 'deposits_per_s', 'naive_per_s'):.2f} x (b) |",
        f"| cross-partition transfers | {_rate([t['transfers_per_s'] for t in trials])} | "
        f"{_ratio(trials, 'transfers_per_s', 'raw_per_s'):.2f} x (a) |",
        f"| queries during deposits | {_q(_queries(trials))}{_p99s(trials)} | |",
        *_cpu_rows(trials),
        f"| baseline (a): raw aiokafka consume-produce | {_rate(raw)} | 1 |",
        f"| baseline (b): naive Faust agent | {_rate(naive)} | "
        f"{_ratio(trials, 'naive_per_s', 'raw_per_s'):.2f} x (a) |",
        *_alert_rows(trials),
        f"| worker peak RSS | {max(t['peak_rss_mib'] or 0 for t in trials):.0f} MiB | |",
        f"| `replay --verify` after the load | {r['verify']} | |",
    ]


def _cpu_rows(trials: list[dict[str, Any]]) -> list[str]:
    """CPU per deposit while the deposits ran under the query load (median of trials)."""
    if "deposit_cpu_us" not in trials[0]:
        return []
    bank, broker = (_median_us(trials, "deposit_cpu_us", part) for part in ("bank", "broker"))
    return [
        f"| CPU per deposit, the bank's processes (queries served included) | {bank} | |",
        f"| CPU per deposit, the broker | {broker} | |",
    ]


def _alert_rows(trials: list[dict[str, Any]]) -> list[str]:
    """With ``--alerts-compare``: the deposits with the alert agent on and off, the drop
    (the median of each trial's own), and the agent's cost per event."""
    if "deposits_alerts_on_per_s" not in trials[0]:
        return []
    on = [t["deposits_alerts_on_per_s"] for t in trials]
    off = [t["deposits_alerts_off_per_s"] for t in trials]
    drop = 100 * (1 - _ratio(trials, "deposits_alerts_on_per_s", "deposits_alerts_off_per_s"))
    costs = [t["alert_us_per_event"] for t in trials if t.get("alert_us_per_event")]
    cost = f"{statistics.median(costs):.0f} µs" if costs else "no events"
    return [
        f"| deposits, alert agent on (no queries) | {_rate(on)} | {drop:.1f} % drop "
        "(target: at most 15 %) |",
        f"| deposits, alert agent off (no queries) | {_rate(off)} | |",
        f"| alert agent per event (decode, rules, staging; not its produce) | {cost} | |",
    ]


def _layout_table(config: Config, compared: dict[str, Any]) -> list[str]:
    """Issue 16's layouts: medians of their trials, deposits against the first layout's;
    then what each costs in CPU, beside the naive Faust agent's cost per record."""
    layouts = compared["layouts"]
    lines = [
        f"## Layouts (issue 16, on {BROKER_NAMES[config.brokers[0]]})",
        "",
        "| layout | deposits /s, queries running | against the first | transfers /s | "
        "queries during deposits | peak RSS, all workers | `replay --verify` |",
        "|---|---|---|---|---|---|---|",
    ]
    first = None
    for name, r in layouts.items():
        trials = r["trials"]
        rate = statistics.median(t["deposits_per_s"] for t in trials)
        first = first or rate
        lines.append(
            f"| {name} | {_rate([t['deposits_per_s'] for t in trials])} | "
            f"{rate / first:.2f} x | {_rate([t['transfers_per_s'] for t in trials])} | "
            f"{_q(_queries(trials))} | {max(t['peak_rss_mib'] for t in trials):.0f} MiB | "
            f"{r['verify']} |"
        )
    lines += [
        "",
        "CPU time summed over the bank's processes (bank) and the broker's, per operation "
        "(medians of the trials):",
        "",
        "| layout | per deposit, queries running: bank | broker | deposits /s, no queries | "
        "per deposit, no queries: bank | broker | per transfer: bank | broker |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in layouts.items():
        trials = r["trials"]
        cpu = [
            _median_us(trials, measure, part)
            for measure in ("deposit_cpu_us", "quiet_deposit_cpu_us", "transfer_cpu_us")
            for part in ("bank", "broker")
        ]
        quiet = _rate([t["quiet_deposits_per_s"] for t in trials])
        lines.append(f"| {name} | {cpu[0]} | {cpu[1]} | {quiet} | {' | '.join(cpu[2:])} |")
    naive = compared["naive"]
    lines += [
        "",
        f"The naive Faust agent (baseline (b): a table write and a send per record) on a "
        f"broker of the same kind: {_rate([n['per_s'] for n in naive])}, "
        f"{statistics.median(n['cpu_us'] for n in naive):.0f} µs of its worker's CPU per "
        "record.",
    ]
    return lines


def _median_us(trials: list[dict[str, Any]], measure: str, part: str) -> str:
    return f"{statistics.median(t[measure][part] for t in trials):.0f} µs"


def _memory(sample: dict[str, float]) -> str:
    """A ``/metrics`` memory sample: RSS, glibc's heap in use and free, RocksDB's budget."""
    if not sample:
        return "not sampled"
    mib = {part: value / (1 << 20) for part, value in sample.items()}
    return (
        f"RSS {mib['rss']:.0f}: heap {mib.get('heap_in_use', 0):.0f} in use, "
        f"{mib.get('heap_free', 0):.0f} free; RocksDB {mib.get('rocksdb', 0):.0f} MiB"
    )


def _mib(growth: dict[str, Any], measure: str) -> str:
    """A growth row's memory figure: the sum, with each worker's part when there are several."""
    parts = growth.get(f"{measure}_by_worker_mib") or []
    total = f"{growth[f'{measure}_mib']:.0f} MiB"
    if len(parts) < 2:
        return total
    return " + ".join(f"{part:.0f}" for part in parts) + f" = {total}"


def write_report(config: Config, r: dict[str, Any]) -> str:
    first = next(iter(r["brokers"]), config.brokers[0])  # no main phase with --layouts
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); every figure below comes from one run, "
        "on one machine, with the broker each section names and the worker sharing its "
        "cores. Rates are end to end: from the first command sent until the read model "
        "shows the last outcome (baselines: until their last output record is on the "
        "broker). Compare figures within one broker's section: each has its own baselines.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- settings: {config.accounts} accounts, {config.deposits} deposits, "
        f"{config.transfers} transfers, queries at {config.query_rate:.0f}/s, "
        f"8 partitions, batch {settings.batch_size}, {config.trials} trial(s), "
        f"event loop {same_loop_env().get('FAUST_LOOP', 'aio')} (worker and baselines), "
        f"workers on {allocator.for_workers(os.environ)}'s malloc, "
        f"workers at niceness {priority.niceness(os.environ)}"
        + (" (quick mode)" if config.quick else ""),
        f"- targets (issue 5): {TARGETS}",
    ]
    for kind, phase in r["brokers"].items():
        lines += ["", f"## On {BROKER_NAMES[kind]}", "", *_main_table(phase)]
    if "layouts" in r:
        lines += ["", *_layout_table(config, r["layouts"])]
    lines += [
        "",
        f"## Growth (on {BROKER_NAMES[first]})",
        "",
        "| accounts | opened /s | deposits /s | queries during deposits | "
        "recovery, empty data dir | restart, same data dir | peak RSS | "
        "at the highest RSS sampled | RSS after recovery |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in r["growth"]:
        roles = g.get("roles") or ["all"]
        layout = "" if roles == ["all"] else f" ({', '.join(roles)})"
        samples = g.get("memory_at_peak_by_worker") or [g.get("memory_at_peak") or {}]
        lines.append(
            f"| {g['accounts']:,}{layout} | {g['open_per_s']:,.0f} | "
            f"{g['deposits_per_s']:,.0f} | {_q(g['queries'])} | "
            f"{g['recovery_fresh_s']:.1f} s | {g['restart_same_dir_s']:.1f} s | "
            f"{_mib(g, 'peak_rss')} | {'; '.join(_memory(s) for s in samples)} | "
            f"{_mib(g, 'recovered_rss')} |"
        )
    text = "\n".join(lines) + "\n"
    if config.output != "-":
        path = Path(config.output)
        previous = path.read_text() if path.exists() else ""
        notes = previous.split("<!-- notes -->", 1)[1] if "<!-- notes -->" in previous else "\n"
        path.write_text(text + "\n<!-- notes -->" + notes)
    return text
