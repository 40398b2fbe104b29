"""Reading a topic back from the real broker, to count what was actually published."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from guichet_plumbing.envelope import Envelope


async def read_records(
    bootstrap: str, *topics: str, quiet_for: float = 1.5, timeout: float = 20.0
) -> list[Any]:
    """Every record on `topics` (aiokafka's `ConsumerRecord`: topic, partition, offset, key,
    value), read by a fresh group until nothing new arrives for `quiet_for`."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=250)
            for messages in batch.values():
                found += messages
                last_new = time.monotonic()
            if consumer.assignment() and time.monotonic() - last_new > quiet_for:
                break
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return found


async def read_topic(
    bootstrap: str, topic: str, quiet_for: float = 1.5, timeout: float = 20.0
) -> list[Envelope]:
    """Every envelope on `topic`, as `read_records` finds them."""
    return [
        Envelope.from_bytes(record.value)
        for record in await read_records(bootstrap, topic, quiet_for=quiet_for, timeout=timeout)
    ]
