"""The report's figures over several trials: medians, ranges and per-trial ratios."""

from __future__ import annotations

from pathlib import Path

from bench.report import write_report
from bench.scenarios import Config


def trial(deposits: float, raw: float, p99: float, errors: int = 0) -> dict:
    return {
        "deposits_per_s": deposits,
        "transfers_per_s": deposits / 2,
        "queries": {
            "requests": 100,
            "errors": errors,
            "p50_ms": p99 / 4,
            "p99_ms": p99,
            "max_ms": p99 * 2,
        },
        "peak_rss_mib": deposits / 10,
        "raw_per_s": raw,
        "naive_per_s": raw / 10,
    }


def config(trials: int, output: str) -> Config:
    return Config(
        quick=False,
        accounts=10,
        deposits=10,
        transfers=10,
        query_rate=500,
        growth=[],
        growth_deposits=10,
        trials=trials,
        output=output,
    )


def report(trials: list[dict], tmp_path: Path) -> str:
    phase = {"ready_s": 1.0, "open_per_s": 1.0, "trials": trials, "verify": "exit 0"}
    results = {"brokers": {"tansu": phase}, "growth": []}
    return write_report(config(len(trials), str(tmp_path / "BENCHMARKS.md")), results)


def row(text: str, measure: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {measure}"))


def test_rates_are_medians_with_their_range(tmp_path: Path) -> None:
    text = report([trial(3000, 40000, 9), trial(1000, 10000, 30), trial(2000, 30000, 8)], tmp_path)
    assert "2,000 /s (median of 3: 1,000 to 3,000)" in row(text, "deposits")
    assert "30,000 /s (median of 3: 10,000 to 40,000)" in row(text, "baseline (a)")
    assert "300 MiB" in row(text, "worker peak RSS")  # the highest of the trials


def test_ratios_pair_each_trial_with_its_own_baselines(tmp_path: Path) -> None:
    # Per trial 0.1, 0.2 and 0.05 x (a): the median is 0.1. The ratio of the medians,
    # 2,000 / 30,000 = 0.07, would pair a rate with a baseline of another moment.
    text = report([trial(3000, 30000, 9), trial(1000, 5000, 30), trial(2000, 40000, 8)], tmp_path)
    assert "0.10 x (a), 1.00 x (b)" in row(text, "deposits")


def test_queries_report_the_median_p99_the_worst_max_and_every_error(tmp_path: Path) -> None:
    text = report(
        [trial(3000, 40000, 9, errors=1), trial(1000, 10000, 30), trial(2000, 30000, 8, errors=2)],
        tmp_path,
    )
    queries = row(text, "queries during deposits")
    assert "p99 9.0 ms" in queries
    assert "max 60.0 ms" in queries
    assert "3 errors of 300" in queries
    assert "9.0, 30.0, 8.0 ms" in queries


def test_one_trial_reports_plain_figures(tmp_path: Path) -> None:
    text = report([trial(3000, 40000, 9)], tmp_path)
    assert "| 3,000 /s |" in row(text, "deposits")
    assert "median" not in text


def test_each_broker_has_a_section_with_its_own_baselines() -> None:
    kafka = {"ready_s": 1.0, "open_per_s": 1.0, "verify": "exit 0"}
    results = {
        "brokers": {
            "kafka": {**kafka, "trials": [trial(1000, 10000, 9)]},
            "tansu": {**kafka, "trials": [trial(3000, 10000, 9)]},
        },
        "growth": [],
    }
    text = write_report(config(1, "-"), results)
    kafka_part, tansu_part = text.split("## On Tansu")
    assert "## On Apache Kafka" in kafka_part
    assert "0.10 x (a)" in row(kafka_part.split("## On Apache Kafka")[1], "deposits")
    assert "0.30 x (a)" in row(tansu_part, "deposits")
    assert "## Growth (on Apache Kafka" in tansu_part


def test_alerts_on_and_off_give_the_drop_of_each_trial_and_the_cost_per_event(
    tmp_path: Path,
) -> None:
    trials = [
        {**trial(3000, 40000, 9), "deposits_alerts_on_per_s": 900.0},
        {**trial(3000, 40000, 9), "deposits_alerts_on_per_s": 800.0},
    ]
    for one, off, cost in zip(trials, (1000.0, 1000.0), (40.0, 60.0), strict=True):
        one.update(deposits_alerts_off_per_s=off, alert_us_per_event=cost)
    text = report(trials, tmp_path)
    assert "15.0 % drop" in row(text, "deposits, alert agent on")  # median of 10 % and 20 %
    assert "1,000 /s" in row(text, "deposits, alert agent off")
    assert "50 µs" in row(text, "alert agent per event")
    assert "alert agent" not in report([trial(3000, 40000, 9)], tmp_path)


def test_cpu_per_deposit_is_the_median_of_the_trials_for_the_bank_and_the_broker(
    tmp_path: Path,
) -> None:
    trials = [trial(3000, 40000, 9) for _ in range(3)]
    for one, bank, broker in zip(trials, (300.0, 200.0, 250.0), (90.0, 70.0, 80.0), strict=True):
        one["deposit_cpu_us"] = {"bank": bank, "broker": broker}
    text = report(trials, tmp_path)
    assert "| 250 µs |" in row(text, "CPU per deposit, the bank's processes")
    assert "| 80 µs |" in row(text, "CPU per deposit, the broker")
    assert "CPU per deposit" not in report([trial(3000, 40000, 9)], tmp_path)


def test_layouts_report_medians_against_the_first_layout(tmp_path: Path) -> None:
    def trials(rate: float, cpu: float) -> list[dict]:
        return [
            {
                **trial(rate * scale, 1, 9),
                "quiet_deposits_per_s": 2 * rate * scale,
                "deposit_cpu_us": {"bank": cpu * scale, "broker": 50.0},
                "quiet_deposit_cpu_us": {"bank": cpu * scale - 1, "broker": 40.0},
                "transfer_cpu_us": {"bank": 3 * cpu * scale, "broker": 60.0},
            }
            for scale in (0.5, 1.0, 2.0)
        ]

    layouts = {
        "one worker (all)": {"trials": trials(1000, 300), "verify": "exit 0 (0 problems)"},
        "split (processor, query)": {"trials": trials(1300, 200), "verify": "exit 0 (0 problems)"},
    }
    naive = [{"per_s": 900.0, "cpu_us": 700.0}, {"per_s": 1100.0, "cpu_us": 500.0}]
    results = {"brokers": {}, "growth": [], "layouts": {"layouts": layouts, "naive": naive}}
    text = write_report(config(3, str(tmp_path / "BENCHMARKS.md")), results)
    lines = text.splitlines()
    one, split = row(text, "one worker"), row(text, "split")
    assert "1,000 /s (median of 3: 500 to 2,000)" in one and "| 1.00 x |" in one
    assert "| 1.30 x |" in split and "exit 0 (0 problems)" in split
    # The CPU table: per deposit with queries, without, per transfer; bank then broker.
    [cpu] = [line for line in lines if line.startswith("| split") and "2,600 /s" in line]
    assert "| 200 µs | 50 µs | 2,600 /s (median of 3: 1,300 to 5,200) | 199 µs | 40 µs |" in cpu
    assert cpu.endswith("| 600 µs | 60 µs |")
    assert "1,000 /s (median of 2: 900 to 1,100), 600 µs of its worker's CPU" in text


def test_growth_rows_split_the_peak_by_part(tmp_path: Path) -> None:
    def grown(accounts: int, memory: dict) -> dict:
        return {
            "accounts": accounts,
            "open_per_s": 1500.0,
            "deposits_per_s": 900.0,
            "queries": {"requests": 0, "errors": 0},
            "recovery_fresh_s": 30.0,
            "restart_same_dir_s": 4.0,
            "peak_rss_mib": 824.0,
            "memory_at_peak": memory,
            "recovered_rss_mib": 518.0,
        }

    parts = {"rss": 800 << 20, "heap_in_use": 300 << 20, "heap_free": 200 << 20}
    results = {"brokers": {}, "growth": [grown(1000, {}), grown(200_000, parts)]}
    text = write_report(config(1, str(tmp_path / "BENCHMARKS.md")), results)
    assert "| 824 MiB | not sampled | 518 MiB |" in row(text, "1,000 ")
    assert "| RSS 800: heap 300 in use, 200 free; RocksDB 0 MiB |" in row(text, "200,000")


def test_a_split_growth_row_names_its_roles_and_each_workers_memory(tmp_path: Path) -> None:
    processor = {"rss": 420 << 20, "heap_in_use": 200 << 20, "heap_free": 50 << 20}
    query = {"rss": 380 << 20, "heap_in_use": 180 << 20, "heap_free": 40 << 20}
    split = {
        "accounts": 1_000_000,
        "roles": ["processor", "query"],
        "open_per_s": 1500.0,
        "deposits_per_s": 900.0,
        "queries": {"requests": 10, "errors": 0, "p50_ms": 1.0, "p99_ms": 9.0, "max_ms": 20.0},
        "recovery_fresh_s": 30.0,
        "restart_same_dir_s": 4.0,
        "peak_rss_mib": 800.0,
        "peak_rss_by_worker_mib": [420.0, 380.0],
        "memory_at_peak": processor,
        "memory_at_peak_by_worker": [processor, query],
        "recovered_rss_mib": 600.0,
        "recovered_rss_by_worker_mib": [350.0, 250.0],
    }
    text = write_report(
        config(1, str(tmp_path / "BENCHMARKS.md")), {"brokers": {}, "growth": [split]}
    )
    line = row(text, "1,000,000 (processor, query)")
    assert "| 420 + 380 = 800 MiB |" in line
    assert "RSS 420: heap 200 in use, 50 free; RocksDB 0 MiB; RSS 380: heap 180 in use" in line
    assert line.endswith("| 350 + 250 = 600 MiB |")
