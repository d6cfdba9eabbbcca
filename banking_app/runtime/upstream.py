"""The private parts of faust-streaming, mode-streaming and aiokafka the runtime relies on,
checked before they are used.

``consumer``, ``transport``, ``faust_app``, ``streams``, ``tables`` and ``produce``
override methods that Faust calls by name, and read private attributes of Faust, mode
and aiokafka (each module's docstring says which upstream code it replaces or reads,
and why). An upgrade that renamed one of them
would not fail where it matters: an override nobody calls any more is dead code (Faust's
own fetch loop would run again, with the skips the in-order consumer exists to prevent),
and a private attribute that is set but no longer read (the fetch wait) changes nothing.
So every such name is listed here (``HOOKS``), and:

- ``check_classes`` runs when ``banking_app.runtime.transport`` is imported, before any
  worker starts: the upstream classes still have what is overridden or called, and the
  upstream code that calls an override by name still does;
- ``check_instance`` runs as Faust's consumer and its aiokafka client, each take stream
  and each table's store are made, for the attributes that exist only on instances.

Either raises ``UpstreamChanged`` naming the missing name, the installed version and the
version the runtime is written against (``PINNED``, as pinned in ``pyproject.toml``).
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from importlib import metadata
from inspect import getattr_static
from typing import Any

import aiokafka
import faust
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer import subscription_state as aiokafka_state
from faust.assignor import PartitionAssignor
from faust.stores import rocksdb as faust_rocksdb
from faust.tables import base as faust_tables
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_driver
from mode import Service
from mode.threads import QueueServiceThread

log = logging.getLogger(__name__)

#: The versions the runtime was written and tested against; pyproject.toml pins them.
PINNED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}

FAUST, MODE, AIOKAFKA = "faust-streaming", "mode-streaming", "aiokafka"
APP = "banking_app.runtime.faust_app (the bank's transport)"
IN_ORDER = "banking_app.runtime.consumer (in-order delivery)"
FETCH_WAIT = "banking_app.runtime.transport (BANKING_FETCH_MAX_WAIT_MS)"
TRUE_ENDS = "banking_app.runtime.transport (true end offsets for table recovery, on Tansu)"
READ_COMMITTED = "banking_app.runtime.transport (commands read once their transaction commits)"
THREAD = "banking_app.runtime.transport (its consumer thread: fetch wait, true end offsets)"
TAKES = "banking_app.runtime.streams (quiet takes, acknowledged once handled)"
TABLES = "banking_app.runtime.tables (a take's table writes as one RocksDB batch)"
PRODUCE = "banking_app.runtime.produce (a take's records as one batch per partition)"
HEALTH = "banking_app.runtime.consumer (consumed_to: an agent's lag, for /health)"
ROCKSDB_MEMORY = "banking_app.runtime.rocksdb_memory (one memory budget for RocksDB)"
ASSIGNOR = "banking_app.runtime.assignor (workers of different roles in one group)"
RESTORE = "banking_app.runtime.restore (tables restored in bulk before the worker joins)"


class UpstreamChanged(RuntimeError):
    """An upstream package lacks a private name the runtime relies on."""


@dataclass(frozen=True)
class Hook:
    """``owner.name`` in ``package``, which ``user`` (ours) overrides, calls or reads.

    ``on_instances``: the name is set in ``__init__``, so it is looked for on an
    instance (``check_instance``), not on the class. ``called_from``: the upstream
    function that must still use ``name``; for an override, this is what makes it run.
    """

    package: str
    owner: type
    name: str
    user: str
    on_instances: bool = False
    called_from: tuple[type, str] | None = None

    def class_problem(self) -> str | None:
        if not self.on_instances and not hasattr(self.owner, self.name):
            return f"{_qualified(self.owner)} has no {self.name}"
        if self.called_from is None:
            return None
        caller_class, caller = self.called_from
        where = f"{_qualified(caller_class)}.{caller}"
        if not hasattr(caller_class, caller):
            return f"{where} does not exist (it used {self.name})"
        if self.name not in _names_used(getattr_static(caller_class, caller)):
            return f"{where} no longer uses {self.name}"
        return None

    def fail(self, problem: str) -> UpstreamChanged:
        pinned = PINNED[self.package]
        return UpstreamChanged(
            f"{self.package} {installed(self.package)}: {problem}, which {self.user} relies "
            f"on. The runtime reaches into {self.package}'s internals and is written against "
            f"{self.package}=={pinned} (pinned in pyproject.toml): install {pinned}, or port "
            "the runtime to the new internals (banking_app/runtime/__init__.py lists what "
            "to re-read)."
        )


HOOKS = (
    # faust_app.BankApp installs the bank's transport (and so its consumer).
    Hook(FAUST, faust.App, "_new_transport", APP, called_from=(faust.App, "transport")),
    # consumer.InOrderConsumer: Faust's fetch loop, replaced, and what it uses.
    Hook(
        FAUST,
        faust_consumer.Consumer,
        "_drain_messages",
        IN_ORDER,
        called_from=(faust_consumer.Fetcher, "_fetcher"),
    ),
    Hook(FAUST, faust_consumer.Consumer, "_read_offset", IN_ORDER, on_instances=True),
    Hook(FAUST, faust_consumer.Consumer, "_commit_every", IN_ORDER, on_instances=True),
    Hook(FAUST, faust_consumer.Consumer, "_n_acked", IN_ORDER),
    # streams.let_go: a take left unacknowledged no longer holds up a stop or rebalance.
    Hook(
        FAUST,
        faust_consumer.Consumer,
        "_unacked_messages",
        "streams.let_go",
        on_instances=True,
        called_from=(faust_consumer.Consumer, "wait_empty"),
    ),
    Hook(FAUST, faust_consumer.Consumer, "_add_gap", IN_ORDER),
    Hook(FAUST, faust_consumer.Consumer, "consumer_stopped_errors", IN_ORDER),
    Hook(FAUST, faust_consumer.Consumer, "seek_to_committed", IN_ORDER),
    Hook(FAUST, faust_consumer.Consumer, "seek", IN_ORDER),
    Hook(FAUST, faust_consumer.Consumer, "on_partitions_revoked", IN_ORDER),
    Hook(FAUST, faust_consumer.Consumer, "on_partitions_assigned", IN_ORDER),
    Hook(FAUST, faust_consumer.ThreadDelegateConsumer, "_thread", IN_ORDER, on_instances=True),
    Hook(FAUST, faust_driver.AIOKafkaConsumerThread, "_ensure_consumer", IN_ORDER),
    Hook(FAUST, faust_driver.AIOKafkaConsumerThread, "earliest_offsets", IN_ORDER),
    Hook(MODE, Service, "_stopped", IN_ORDER, on_instances=True),
    Hook(MODE, Service, "_crashed", IN_ORDER, on_instances=True),
    Hook(
        FAUST,
        faust_consumer.ThreadDelegateConsumer,
        "_commit",
        IN_ORDER,
        called_from=(faust_consumer.Consumer, "_commit_offsets"),
    ),
    Hook(MODE, QueueServiceThread, "call_thread", IN_ORDER),
    # ...and aiokafka's subscription state, for a partition's fetch position without
    # waiting for one (consumer.InOrderConsumer._position).
    Hook(AIOKAFKA, aiokafka.AIOKafkaConsumer, "_subscription", IN_ORDER, on_instances=True),
    Hook(AIOKAFKA, aiokafka_state.SubscriptionState, "subscription", IN_ORDER),
    Hook(AIOKAFKA, aiokafka_state.Subscription, "assignment", IN_ORDER),
    Hook(AIOKAFKA, aiokafka_state.Assignment, "state_value", IN_ORDER),
    Hook(AIOKAFKA, aiokafka_state.TopicPartitionState, "position", IN_ORDER),
    Hook(AIOKAFKA, aiokafka_state.TopicPartitionState, "has_valid_position", IN_ORDER),
    # transport: the consumer thread, the fetch wait and the end offsets.
    Hook(
        FAUST,
        faust_driver.Transport,
        "Consumer",
        IN_ORDER,
        called_from=(faust_driver.Transport, "create_consumer"),
    ),
    Hook(
        FAUST,
        faust_consumer.ThreadDelegateConsumer,
        "_new_consumer_thread",
        THREAD,
        called_from=(faust_consumer.ThreadDelegateConsumer, "__init__"),
    ),
    Hook(
        FAUST,
        faust_driver.AIOKafkaConsumerThread,
        "_create_worker_consumer",
        FETCH_WAIT,
        called_from=(faust_driver.AIOKafkaConsumerThread, "_create_consumer"),
    ),
    Hook(
        AIOKAFKA,
        aiokafka.AIOKafkaConsumer,
        "_fetch_max_wait_ms",
        FETCH_WAIT,
        on_instances=True,
        called_from=(aiokafka.AIOKafkaConsumer, "start"),
    ),
    Hook(
        AIOKAFKA,
        aiokafka.AIOKafkaConsumer,
        "_isolation_level",
        READ_COMMITTED,
        on_instances=True,
        called_from=(aiokafka.AIOKafkaConsumer, "start"),
    ),
    Hook(
        FAUST,
        faust_driver.AIOKafkaConsumerThread,
        "highwaters",
        TRUE_ENDS,
        called_from=(faust_consumer.ThreadDelegateConsumer, "highwaters"),
    ),
    # streams.QuietTakeStream: Faust's take_events, with its own buffer processor.
    Hook(FAUST, faust.Stream, "_enable_passive", TAKES),
    Hook(FAUST, faust.Stream, "_processors", TAKES, on_instances=True),
    Hook(FAUST, faust.Stream, "current_event", TAKES),
    # tables.BatchedTable: writes a take's rows and the changelog offset straight to the
    # partition's RocksDB, where Faust's recovery reads the offset back.
    Hook(
        FAUST,
        faust_tables.Collection,
        "_new_store",
        TABLES,
        called_from=(faust_tables.Collection, "data"),
    ),
    Hook(FAUST, faust_rocksdb.Store, "_db_for_partition", TABLES),
    Hook(FAUST, faust_rocksdb.Store, "_dbs", TABLES, on_instances=True),
    Hook(
        FAUST,
        faust_rocksdb.Store,
        "offset_key",
        TABLES,
        called_from=(faust_rocksdb.Store, "persisted_offset"),
    ),
    # health: how far each agent's partitions are committed.
    Hook(FAUST, faust_consumer.Consumer, "_committed_offset", HEALTH, on_instances=True),
    # restore: writes a store's partitions as apply_changelog_batch does, with the
    # persisted offset Faust's recovery starts from (and _dbs, _db_for_partition above).
    Hook(FAUST, faust_rocksdb.Store, "apply_changelog_batch", RESTORE),
    Hook(AIOKAFKA, aiokafka.AIOKafkaConsumer, "_client", RESTORE, on_instances=True),
    Hook(AIOKAFKA, AIOKafkaClient, "force_metadata_update", RESTORE),
    Hook(
        FAUST,
        faust_rocksdb.Store,
        "offset_key",
        RESTORE,
        called_from=(faust_rocksdb.Store, "set_persisted_offset"),
    ),
    # rocksdb memory: the options each store opens its databases with.
    Hook(FAUST, faust_rocksdb.Store, "rocksdb_options", ROCKSDB_MEMORY, on_instances=True),
    Hook(
        FAUST,
        faust_rocksdb.RocksDBOptions,
        "as_options",
        ROCKSDB_MEMORY,
        called_from=(faust_rocksdb.RocksDBOptions, "open"),
    ),
    # produce: the aiokafka producer behind Faust's, and its batch interface.
    Hook(FAUST, faust_driver.Producer, "_ensure_producer", PRODUCE),
    Hook(AIOKAFKA, aiokafka.AIOKafkaProducer, "create_batch", PRODUCE),
    Hook(AIOKAFKA, aiokafka.AIOKafkaProducer, "send_batch", PRODUCE),
    # assignor: what the group's leader and each member take for changelog topics.
    *(
        Hook(
            FAUST,
            PartitionAssignor,
            "_table_manager",
            ASSIGNOR,
            on_instances=True,
            called_from=(PartitionAssignor, caller),
        )
        for caller in ("_get_changelog_distribution", "_protocol_assignments", "on_assignment")
    ),
    Hook(FAUST, PartitionAssignor, "changelog_distribution", ASSIGNOR),
)


def check_classes() -> None:
    """Raise ``UpstreamChanged`` for the first hook the installed classes lack."""
    for hook in HOOKS:
        problem = hook.class_problem()
        if problem is not None:
            raise hook.fail(problem)
    for package, pinned in PINNED.items():
        if installed(package) != pinned:
            log.warning(
                "%s %s is installed; the runtime is written against %s (pyproject.toml)",
                package,
                installed(package),
                pinned,
            )


def check_instance(instance: object) -> None:
    """Raise ``UpstreamChanged`` when ``instance`` lacks an attribute a hook names for
    instances of its class."""
    for hook in HOOKS:
        if (
            hook.on_instances
            and isinstance(instance, hook.owner)
            and not hasattr(instance, hook.name)
        ):
            raise hook.fail(f"a {_qualified(hook.owner)} has no {hook.name}")


def installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _names_used(function: Any) -> set[str]:
    """The attribute and global names a function's code uses, nested code included."""
    code = _code(function)
    return _code_names(code) if code is not None else set()


def _code(function: Any) -> types.CodeType | None:
    for _ in range(8):  # through properties, wrappers and mode's Service.task
        if isinstance(function, property):
            function = function.fget
        elif isinstance(function, staticmethod | classmethod):
            function = function.__func__
        elif hasattr(function, "__wrapped__"):
            function = function.__wrapped__
        elif hasattr(function, "__code__"):
            return function.__code__  # type: ignore[no-any-return]
        elif callable(getattr(function, "fun", None)):
            function = function.fun
        else:
            return None
    return None


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _code_names(constant)
    return names
