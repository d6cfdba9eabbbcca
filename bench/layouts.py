"""Issue 16's layouts, side by side: one worker running every role, two such workers,
and the split (an event processor beside a query service).

Each layout gets a broker of its own (a layout's workers form one consumer group, so
two layouts on one broker would share their partitions), the same accounts, and the
same trials: deposits under the query load, then transfers. The bench's commands go
straight to the ``commands`` topic, so the command service's role is the producer's
here, and a layout is told apart by where the agents and the reads run. Queries go
to every worker that holds the read model, in turn.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

from banking_app.operations.local_cluster import Worker
from bench.cpu import tree_seconds
from bench.scenarios import (
    READERS,
    Bank,
    Config,
    QueryLoad,
    _verify,
    cpu_per_op,
    deposits,
    log,
    naive_run,
    open_accounts,
    role_workers,
    started_broker,
    started_together,
    stop_all,
    transfers,
)

#: The layouts compared, by name: each worker's role (``BANKING_ROLE``).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "one worker (all)": ("all",),
    "two workers (all, all)": ("all", "all"),
    "split (processor, query)": ("processor", "query"),
}


def _cpu(workers: list[Worker], bank: Bank) -> tuple[float, float]:
    pids = [w.process.pid for w in workers if w.process is not None]
    broker = bank.broker.process
    return tree_seconds(pids), tree_seconds([broker.pid]) if broker is not None else 0.0


async def layout(
    config: Config, kind: str, roles: tuple[str, ...], root: Path, rng: random.Random
) -> dict[str, Any]:
    """One layout's trials on a broker of its own."""
    with started_broker(config, kind, root / "broker") as broker:
        workers = role_workers(broker, root, roles)
        try:
            started_together(workers)
            bank = Bank(broker, workers[0])
            opened = await open_accounts(bank, config.accounts, "l")
            urls = ",".join(
                w.url for w, role in zip(workers, roles, strict=True) if role in READERS
            )
            trials = []
            for index in range(1, config.trials + 1):
                with QueryLoad(urls, config.query_rate, config.accounts) as load:
                    before = _cpu(workers, bank)
                    rate = await deposits(bank, config.accounts, config.deposits, f"l{index}", rng)
                    after = _cpu(workers, bank)
                # The same deposits without the query load: what a deposit alone costs.
                quiet_before = _cpu(workers, bank)
                quiet = await deposits(bank, config.accounts, config.deposits, f"q{index}", rng)
                quiet_after = _cpu(workers, bank)
                moved = await transfers(bank, config.accounts, config.transfers, f"l{index}", rng)
                moved_after = _cpu(workers, bank)
                trials.append(
                    {
                        "deposits_per_s": rate,
                        "quiet_deposits_per_s": quiet,
                        "transfers_per_s": moved,
                        "queries": load.summary(),
                        "deposit_cpu_us": cpu_per_op(before, after, config.deposits),
                        "quiet_deposit_cpu_us": cpu_per_op(
                            quiet_before, quiet_after, config.deposits
                        ),
                        "transfer_cpu_us": cpu_per_op(quiet_after, moved_after, config.transfers),
                        "peak_rss_mib": sum(w.peak_rss_mib() or 0 for w in workers),
                    }
                )
            verified = _verify(broker)
        finally:
            stop_all(workers)
    return {"roles": list(roles), "open_per_s": opened, "trials": trials, "verify": verified}


async def compare(config: Config, kind: str, root: Path, rng: random.Random) -> dict[str, Any]:
    """Every layout, one after the other, on brokers of ``kind``."""
    results: dict[str, Any] = {}
    for name, roles in LAYOUTS.items():
        log(f"layout: {name}")
        results[name] = await layout(config, kind, roles, root / f"layout-{len(results)}", rng)
    log("the naive Faust agent, for its CPU per record")
    with started_broker(config, kind, root / "naive-broker") as broker:
        naive = [
            await naive_run(broker, config.deposits, root / f"naive-{index}", f"-l{index}")
            for index in range(1, config.trials + 1)
        ]
    return {"layouts": results, "naive": [{"per_s": r, "cpu_us": c} for r, c in naive]}


def median(trials: list[dict[str, Any]], measure: str) -> float:
    return statistics.median(t[measure] for t in trials)
