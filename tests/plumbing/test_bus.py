"""The Kafka adapter: a key lands where any Kafka client would put it, a relay pass goes
out as record batches that keep each key's order, and a failure names what went out."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import example, given
from hypothesis import strategies as st

from guichet_plumbing.bus import (
    KafkaBus,
    KeyPartitioner,
    Outgoing,
    PublishFailed,
    Subscription,
    murmur2,
)
from guichet_plumbing.localinfra import LocalBroker, free_port
from tests.plumbing.kafka_tools import read_records


@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xff\xff")  # every tail length, high bits set
@example(b"\xff\xff")
@example(b"\x80")
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_murmur2_matches_the_java_clients_published_values() -> None:
    # Kafka's UtilsTest.testMurmur2 (clients/src/test/java/.../utils/UtilsTest.java).
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key


@given(
    st.lists(st.sampled_from([b"a", b"request-1", b"request-2", "é".encode()]), max_size=20),
    st.integers(min_value=1, max_value=12),
)
def test_partitioner_picks_the_default_partition_even_for_repeated_keys(
    keys: list[bytes], partitions: int
) -> None:
    ours, default = KeyPartitioner(), DefaultPartitioner()
    every = list(range(partitions))
    for key in keys:
        assert ours(key, every, every) == default(key, every, every)


def test_partitioner_spreads_keyless_events_over_available_partitions() -> None:
    ours = KeyPartitioner()
    assert {ours(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
    assert {ours(None, [0, 1], []) for _ in range(50)} == {0, 1}


TYPES = ("test.first.v1", "test.second.v1")
# 40 KiB each: this key's events fill more than one 256 KiB batch on their partition.
BIG_KEY = "big-request"


def batch_of_events() -> list[Outgoing]:
    """Several keys (one of them empty) on two topics, in an order a relay pass could see."""
    keys = ["request-1", "request-2", "request-3", "", BIG_KEY]
    events = []
    for index in range(150):
        key = keys[index % len(keys)]
        size = 40 * 1024 if key == BIG_KEY else 300
        payload = f"{index}:".encode() + b"x" * size
        events.append(Outgoing(TYPES[index % 2], key, payload))
    return events


async def started(kafka: LocalBroker, prefix: str) -> KafkaBus:
    bus = KafkaBus(kafka.bootstrap_servers, topic_prefix=prefix)
    bus.declare(TYPES)
    await bus.start()
    return bus


async def on_the_wire(kafka: LocalBroker, prefix: str) -> dict[int, tuple[str, int, int]]:
    """Each published event's index: its topic, partition and offset."""
    found = {}
    topics = [prefix + event_type for event_type in TYPES]
    for record in await read_records(kafka.bootstrap_servers, *topics):
        index = int(record.value.split(b":", 1)[0])
        assert index not in found, f"event {index} published twice"
        found[index] = (record.topic.removeprefix(prefix), record.partition, record.offset)
    return found


async def test_a_batch_goes_out_whole_each_key_on_its_partition_in_order(
    kafka: LocalBroker, topic_prefix: str
) -> None:
    events = batch_of_events()
    bus = await started(kafka, topic_prefix)
    try:
        assert await bus.publish_batch(events) == len(events)
    finally:
        await bus.stop()
    found = await on_the_wire(kafka, topic_prefix)
    assert sorted(found) == list(range(len(events)))
    default, every = DefaultPartitioner(), list(range(bus.partitions))
    for index, event in enumerate(events):
        assert found[index][1] == default(event.subject.encode(), every, every), index
    # In each partition, offsets follow publication order: a key's events keep theirs.
    for event_type in TYPES:
        for partition in every:
            here = sorted(
                (offset, index)
                for index, (t, p, offset) in found.items()
                if (t, p) == (event_type, partition)
            )
            assert [index for _, index in here] == sorted(index for _, index in here)


class Refusing:
    """The real producer, but one partition's batches fail: refused when handed over, or
    lost in flight (the broker never acknowledges); or one topic's metadata fails."""

    def __init__(self, producer: Any, topic: str, partition: int, how: str) -> None:
        self.producer = producer
        self.victim = (topic, partition)
        self.how = how

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    async def partitions_for(self, topic: str) -> Any:
        if self.how == "no metadata" and topic == self.victim[0]:
            raise KafkaTimeoutError
        return await self.producer.partitions_for(topic)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        if (topic, partition) != self.victim:
            return await self.producer.send_batch(batch, topic, partition=partition)
        if self.how == "refused":
            raise KafkaTimeoutError
        lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lost.set_exception(KafkaConnectionError("lost"))
        return lost


async def publish_with(
    kafka: LocalBroker, prefix: str, events: list[Outgoing], victim: tuple[str, int], how: str
) -> tuple[int, set[int]]:
    """`PublishFailed.sent`, and which events are on the broker."""
    bus = await started(kafka, prefix)
    bus._producer = Refusing(bus._producer, prefix + victim[0], victim[1], how)
    try:
        with pytest.raises(PublishFailed) as failed:
            await bus.publish_batch(events)
    finally:
        bus._producer = bus._producer.producer  # type: ignore[attr-defined]
        await bus.stop()
    return failed.value.sent, set(await on_the_wire(kafka, prefix))


@pytest.mark.parametrize("how", ["refused", "lost"])
# request-3's partition never fills a batch; the big key's fills three.
@pytest.mark.parametrize("key", ["request-3", BIG_KEY])
async def test_a_failed_batch_names_the_first_event_not_published(
    kafka: LocalBroker, topic_prefix: str, how: str, key: str
) -> None:
    events = batch_of_events()
    default, every = DefaultPartitioner(), [0, 1, 2]
    victim = (TYPES[0], default(key.encode(), every, every))
    on_victim = {
        index
        for index, event in enumerate(events)
        if (event.event_type, default(event.subject.encode(), every, every)) == victim
    }
    sent, found = await publish_with(kafka, topic_prefix, events, victim, how)
    assert sent == min(on_victim)
    # The relay marks events[:sent] published: every one of them is on the broker.
    assert set(range(sent)) <= found
    # The other partitions' batches were not held back by the failed one: every other
    # event up to where the pass stopped went out, all of them unless a batch was
    # refused while the pass was still filling (it stops there).
    assert found and found == set(range(max(found) + 1)) - on_victim
    if not (how == "refused" and key == BIG_KEY):
        assert found == set(range(len(events))) - on_victim


async def test_a_topic_without_metadata_stops_the_pass_after_sending_what_came_before(
    kafka: LocalBroker, topic_prefix: str
) -> None:
    """The second event is the first on the second topic: the first still goes out."""
    events = batch_of_events()
    sent, found = await publish_with(kafka, topic_prefix, events, (TYPES[1], 0), "no metadata")
    assert (sent, found) == (1, {0})


async def test_a_consumer_that_cannot_start_is_closed_all_the_same() -> None:
    """A broker out of reach while a subscription starts: the consumer it made is closed
    (before, it was left open, its connections and tasks with it, until collected)."""

    async def ignore(envelope: Any) -> None:
        return None

    bus = KafkaBus(f"127.0.0.1:{free_port()}", topic_prefix="nowhere.")
    subscription = Subscription("nobody", frozenset(TYPES), ignore)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(KafkaConnectionError):
            await bus._consume(subscription)
        gc.collect()
    assert not [w for w in caught if "Unclosed AIOKafkaConsumer" in str(w.message)]
