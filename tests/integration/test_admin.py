"""`banking-app create-topics`, which kafka-setup/create_topics.sh falls back to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from support.cluster import Broker

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).parents[2]


async def test_create_topics_script_makes_the_three_topics_with_configured_partitions() -> None:
    with Broker.start() as broker:
        env = {
            **os.environ,
            "KAFKA_BROKER": broker.url,
            "BANKING_PARTITIONS": "3",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "KAFKA_HOME": "",
        }
        script = ROOT / "kafka-setup" / "create_topics.sh"
        first = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        # A second run keeps what exists instead of failing.
        again = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert "exists" in again.stdout

        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(["commands", "events", "commands-dlq"])
        finally:
            await admin.close()
        partitions = {topic["topic"]: len(topic["partitions"]) for topic in described}
        assert partitions == {"commands": 3, "events": 3, "commands-dlq": 3}
