from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.agent_harness import running_harness


@pytest.fixture()
async def harness() -> AsyncIterator[Any]:
    async for agent in running_harness():
        yield agent
