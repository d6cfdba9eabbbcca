"""Apache Kafka (KRaft mode) as local JVM subprocesses: one node, or three on localhost.

The embedded Tansu broker (``embedded_broker``) keeps everything in memory, so it cannot
show what the bank does on the broker it runs on in production: durable logs, a broker
restart, replication, ``acks=all`` with ``min.insync.replicas``, a replica dying. This
module runs the real thing from the jars alone (no distribution, no Docker):
``kafka-setup/fetch.sh`` puts them in a cache once, or ``KAFKA_HOME`` names an unpacked
Kafka distribution whose ``libs/`` is used instead.

``KafkaNode`` is one process that is both broker and controller, with its log
directories under a data directory of its own; the directory is formatted once, and its
cluster id and ports are kept there, so a restart (even by a new ``KafkaNode`` on the
same directory) finds its records, committed offsets and quorum again. ``KafkaCluster``
is three such nodes with a static controller quorum, replication factor 3 and
``min.insync.replicas=2``, as a production cluster is laid out.

Both have the shape of ``local_cluster.Broker`` (``url``, ``bootstrap``) and of
``local_cluster.Worker`` (``start``, ``wait_ready``, ``stop``, ``kill``, ``log_tail``),
and work as context managers, so a caller can swap one broker for another.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from banking_app.operations.embedded_broker import BrokerError, free_port, wait_for_port

#: The Kafka release ``kafka-setup/pom.xml`` fetches (its ``kafka.version``). 4.x drops
#: the protocol versions older than Kafka 2.1's; aiokafka 0.14 negotiates versions per
#: request (ApiVersions) and works with it.
KAFKA_VERSION = "4.1.2"
#: ``kafka-setup/`` of this checkout: the pom and the script that fetch the jars.
SETUP_DIR = Path(__file__).resolve().parents[2] / "kafka-setup"
#: JVM start, log recovery and (for a cluster) a controller election take seconds on a
#: slow machine; a start that needs longer than this is broken, not slow.
START_TIMEOUT = 120.0
#: A controlled shutdown moves leadership away first; given this long before SIGKILL.
STOP_TIMEOUT = 30.0
#: A dev box runs up to three of these next to workers: each JVM gets at most this heap.
DEFAULT_HEAP = "512m"
#: A fetch downloads ~45 MB of jars through Maven the first time.
FETCH_TIMEOUT = 900.0

_JVM_OPTIONS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]

# The node's own log: everything on stdout, which the node sends to its log file.
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


class KafkaError(BrokerError):
    """Kafka could not be fetched, formatted or started; a ``BrokerError``, as Tansu's."""


# -- the jars ---------------------------------------------------------------------------


def java_available() -> bool:
    """Whether a Java runtime that can run this Kafka (17 or newer) is on PATH."""
    java = shutil.which("java")
    if not java:
        return False
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if result.returncode != 0 or not match:
        return False
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_..." is Java 8
        major = int(match.group(2))
    return major >= 17


def cache_dir() -> Path:
    """Where ``fetch.sh`` keeps the jars: ``BANKING_KAFKA_CACHE``, else a per-version
    directory under ``~/.cache`` (a version bump fetches anew instead of mixing jars)."""
    override = os.environ.get("BANKING_KAFKA_CACHE")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "banking-app" / f"kafka-{KAFKA_VERSION}"


def kafka_libs() -> Path | None:
    """The directory of Kafka jars to run: ``$KAFKA_HOME/libs``, else the cache when
    ``fetch.sh`` completed it (its marker names this version), else None."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        return libs if any(libs.glob("kafka_2.13-*.jar")) else None
    cache = cache_dir()
    marker = cache / ".complete"
    libs = cache / "libs"
    with contextlib.suppress(OSError):
        if marker.read_text().strip() == KAFKA_VERSION and libs.is_dir():
            return libs
    return None


def ensure_kafka_libs(timeout: float = FETCH_TIMEOUT) -> Path | None:
    """The jars, fetched by ``kafka-setup/fetch.sh`` if need be.

    None when there is nothing to run them with or fetch them by (no Java 17, no Maven,
    or no ``kafka-setup/`` beside this package, as in an installed wheel); KafkaError
    when the fetch itself fails, with its output, since that is a broken setup rather
    than a missing tool.
    """
    libs = kafka_libs()
    if libs is not None:
        return libs
    if os.environ.get("KAFKA_HOME"):
        return None  # a distribution was named and is not there: download nothing
    script = SETUP_DIR / "fetch.sh"
    if not java_available() or not shutil.which("mvn") or not script.is_file():
        return None
    try:
        result = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaError(f"{script} did not finish in {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise KafkaError(f"{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return kafka_libs()


def _require_libs(libs: Path | None) -> Path:
    found = libs or kafka_libs()
    if found is None:
        raise KafkaError(
            f"no Kafka {KAFKA_VERSION} jars: run kafka-setup/fetch.sh (needs Java 17 and "
            "Maven) or set KAFKA_HOME to an unpacked Kafka distribution"
        )
    return found


def new_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` makes it (base64url of 16 random
    bytes, not starting with '-'), without starting a JVM for it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


# -- readiness --------------------------------------------------------------------------


async def _broker_ids(host: str, port: int) -> set[int]:
    """The live brokers that the broker at ``host:port`` reports in a metadata response.

    A KRaft broker lists only brokers that registered and are unfenced, i.e. that caught
    up with the metadata log and serve requests; a TCP accept alone proves less.
    """
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    conn = await create_conn(host, port, request_timeout_ms=5000)
    try:
        response = await conn.send(MetadataRequest([]))
    finally:
        conn.close()
    cluster = ClusterMetadata()
    cluster.update_metadata(response)
    return {int(broker.nodeId) for broker in cluster.brokers()}


def broker_ids(host: str, port: int) -> set[int]:
    """``_broker_ids`` from synchronous code, also while an event loop runs in this
    thread (an async test restarting a node): the request runs on a loop of its own."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _broker_ids(host, port)).result(timeout=30)


# -- one node ---------------------------------------------------------------------------


class _Started:
    """``with``: started on entry, stopped on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class KafkaNode(_Started):
    """One Kafka process in combined mode (broker and controller), durable on disk.

    ``directory`` holds everything of the node: ``kafka-logs/`` (the log directories,
    i.e. the data), ``node.json`` (cluster id and ports, fixed at the first start),
    ``server.properties``, ``log4j2.properties`` and ``kafka.log`` (the process output).
    Alone (no ``voters``), it formats itself as a one-voter dynamic quorum
    (``format --standalone``); in a ``KafkaCluster``, the cluster hands it the static
    voter list and the shared cluster id.
    """

    def __init__(
        self,
        directory: Path | str,
        node_id: int = 1,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        libs: Path | None = None,
        heap: str = DEFAULT_HEAP,
        config: Mapping[str, str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.directory = Path(directory)
        self.node_id = node_id
        self.libs = libs
        self.heap = heap
        self.config: dict[str, str] = dict(config or {})
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.cluster_id: str | None = None
        #: ``controller.quorum.voters`` when part of a static quorum; None alone.
        self.voters: str | None = None
        #: How many nodes' worth of replication the internal topics get.
        self.cluster_size = 1
        self._port = port
        self._controller_port = controller_port
        self._load_state()

    # The state that must not change across restarts: the data is formatted with the
    # cluster id, and a quorum knows its voters by their controller endpoints.

    @property
    def state_path(self) -> Path:
        return self.directory / "node.json"

    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return
        self.cluster_id = state.get("cluster_id")
        self.node_id = int(state.get("node_id", self.node_id))
        self._port = self._port or state.get("port")
        self._controller_port = self._controller_port or state.get("controller_port")

    def _save_state(self) -> None:
        state = {
            "cluster_id": self.cluster_id,
            "node_id": self.node_id,
            "port": self._port,
            "controller_port": self._controller_port,
        }
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self.state_path)

    def assign_ports(self) -> None:
        """Pick free ports for whatever was not fixed yet (the first start)."""
        if self._port is None:
            self._port = free_port()
        if self._controller_port is None:
            self._controller_port = free_port()
            while self._controller_port == self._port:
                self._controller_port = free_port()

    @property
    def port(self) -> int:
        if self._port is None:
            raise KafkaError("the node has no port before its first start")
        return int(self._port)

    @property
    def controller_port(self) -> int:
        if self._controller_port is None:
            raise KafkaError("the node has no controller port before its first start")
        return int(self._controller_port)

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://localhost:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.directory / "kafka-logs"

    @property
    def log_path(self) -> Path:
        return self.directory / "kafka.log"

    @property
    def properties_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def formatted(self) -> bool:
        """Whether ``kafka-storage format`` has run here (it writes meta.properties)."""
        return (self.log_dir / "meta.properties").is_file()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def server_properties(self) -> dict[str, str]:
        """The broker's settings: a dev box's, replication matching the node count."""
        size = self.cluster_size
        min_isr = str(min(2, size))
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": (
                f"PLAINTEXT://localhost:{self.port},CONTROLLER://localhost:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://localhost:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "default.replication.factor": str(size),
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": str(size),
            "transaction.state.log.replication.factor": str(size),
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": str(size),
            "share.coordinator.state.topic.min.isr": min_isr,
            # A consumer group's first member is not kept waiting for others.
            "group.initial.rebalance.delay.ms": "0",
            # Every topic is created on purpose, with the bank's partition count: a
            # metadata request that named a topic before its creator made it would
            # otherwise make it with one partition (num.partitions), and a key's
            # partition is part of the design.
            "auto.create.topics.enable": "false",
        }
        if self.voters:
            properties["controller.quorum.voters"] = self.voters
        else:
            properties["controller.quorum.bootstrap.servers"] = f"localhost:{self.controller_port}"
        properties.update(self.config)
        return properties

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        self.properties_path.write_text("\n".join(lines) + "\n")
        (self.directory / "log4j2.properties").write_text(_LOG4J2.format(level=self.log_level))

    def _java(self, heap: str) -> list[str]:
        java = shutil.which("java")
        if not java:
            raise KafkaError("no java on PATH: Kafka needs a Java 17 runtime")
        libs = _require_libs(self.libs)
        return [
            java,
            f"-Xmx{heap}",
            "-Xms64m",
            *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]

    def prepare(self) -> subprocess.Popen[bytes] | None:
        """Fix ports and cluster id, write the config and, the first time only, start
        formatting the log directory; returns the format process to ``finish_format``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.assign_ports()
        if self.cluster_id is None:
            self.cluster_id = new_cluster_id()
        self._save_state()
        self._write_config()
        if self.formatted:
            return None
        command = [
            *self._java("256m"),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.properties_path),
        ]
        if not self.voters:
            command.append("--standalone")
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def finish_format(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is None:
            return
        try:
            code = process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -1
        if code != 0 or not self.formatted:
            raise KafkaError(f"formatting {self.log_dir} failed ({code}):\n{self.log_tail()}")

    def launch(self) -> None:
        """Start the process and return at once (a cluster starts all its nodes before
        waiting: none of them is ready until a majority of controllers is up)."""
        if self.running:
            return
        self.finish_format(self.prepare())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*self._java(self.heap), "kafka.Kafka", str(self.properties_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, wait: bool = True, timeout: float = START_TIMEOUT) -> None:
        """Start the node; with ``wait``, return once it serves as a broker, or stop it
        and raise (a node that never got ready is not left running)."""
        self.launch()
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.kill()
                raise

    def wait_ready(self, timeout: float = START_TIMEOUT, brokers: set[int] | None = None) -> None:
        """Wait until this node's broker answers a metadata request listing
        ``brokers`` (by default itself) as live."""
        expected = brokers or {self.node_id}
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise KafkaError(f"Kafka node {self.node_id} exited:\n{self.log_tail()}")
            with contextlib.suppress(BrokerError):
                wait_for_port("127.0.0.1", self.port, timeout=1)
                with contextlib.suppress(Exception):
                    seen = broker_ids("localhost", self.port)
                    if expected <= seen:
                        return
            time.sleep(0.2)
        raise KafkaError(
            f"Kafka node {self.node_id} not ready after {timeout:.0f} s (live brokers "
            f"{sorted(seen)}, wanted {sorted(expected)}):\n{self.log_tail()}"
        )

    def signal_stop(self) -> None:
        """Ask for a controlled shutdown (SIGTERM) without waiting for it."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Controlled shutdown (SIGTERM); SIGKILL if it takes longer than ``timeout``."""
        self.signal_stop()
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the data on disk is concerned."""
        if self.running:
            assert self.process is not None
            self.process.kill()
        self._reap(STOP_TIMEOUT)

    def _reap(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- three nodes ------------------------------------------------------------------------


class KafkaCluster(_Started):
    """``size`` nodes on localhost with a static controller quorum and one cluster id.

    Every node is a voter, so the quorum and the brokers survive one node down in three.
    Topics default to replication factor ``size`` and ``min.insync.replicas=2``: with
    ``acks=all``, a write is on two nodes before it is acknowledged. Node ``i`` lives in
    ``directory/node-<i>``; the cluster id and ports are kept there, as for one node.
    """

    def __init__(
        self,
        directory: Path | str,
        size: int = 3,
        *,
        libs: Path | None = None,
        heap: str = DEFAULT_HEAP,
        config: Mapping[str, str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.directory = Path(directory)
        self.nodes = [
            KafkaNode(
                self.directory / f"node-{node_id}",
                node_id,
                libs=libs,
                heap=heap,
                config=config,
                log_level=log_level,
            )
            for node_id in range(1, size + 1)
        ]
        known = {node.cluster_id for node in self.nodes if node.cluster_id}
        if len(known) > 1:
            raise KafkaError(f"the nodes under {self.directory} disagree on the cluster id")
        self.cluster_id = known.pop() if known else new_cluster_id()
        for node in self.nodes:
            node.cluster_id = self.cluster_id
            node.cluster_size = size

    def _assign(self) -> None:
        for node in self.nodes:
            node.assign_ports()
        voters = ",".join(f"{n.node_id}@localhost:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.voters = voters

    @property
    def node_ids(self) -> set[int]:
        return {node.node_id for node in self.nodes}

    def node(self, node_id: int) -> KafkaNode:
        return next(node for node in self.nodes if node.node_id == node_id)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def url(self) -> str:
        """Faust's form for several brokers: ``kafka://a:1;kafka://b:2;...``."""
        return ";".join(node.url for node in self.nodes)

    def start(self, wait: bool = True, timeout: float = START_TIMEOUT) -> None:
        """Format (first time, all nodes at once), launch every node, then wait until
        each one reports all brokers live; on failure nothing is left running."""
        self._assign()
        try:
            formats = [node.prepare() for node in self.nodes if not node.running]
            for node, process in zip(
                [n for n in self.nodes if not n.running], formats, strict=True
            ):
                node.finish_format(process)
            for node in self.nodes:
                node.launch()
            if wait:
                self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_ready(max(1.0, deadline - time.monotonic()), brokers=self.node_ids)

    def restart_node(self, node_id: int, timeout: float = START_TIMEOUT) -> None:
        """Start a stopped or killed node again and wait until the cluster has all its
        brokers back."""
        node = self.node(node_id)
        node.start(wait=False)
        try:
            node.wait_ready(timeout, brokers=self.node_ids)
        except BaseException:
            node.kill()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every node at once (one by one, the last ones would lose their quorum
        mid-shutdown and wait for it), SIGKILL whatever is left after ``timeout``."""
        for node in self.nodes:
            node.signal_stop()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node._reap(max(0.0, deadline - time.monotonic()))

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- node {node.node_id} ---\n{node.log_tail(lines)}" for node in self.nodes
        )


@contextlib.contextmanager
def running_kafka(directory: Path | str, nodes: int = 1) -> Iterator[KafkaNode | KafkaCluster]:
    """One node (or a cluster of ``nodes``) for the duration of the block, stopped after;
    the counterpart of ``embedded_broker.running_tansu``, but durable in ``directory``."""
    broker: KafkaNode | KafkaCluster = (
        KafkaNode(directory) if nodes == 1 else KafkaCluster(directory, nodes)
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
