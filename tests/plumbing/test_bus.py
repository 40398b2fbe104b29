"""The Kafka adapter's partitioning: a key lands where any Kafka client would put it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import example, given
from hypothesis import strategies as st

from guichet_plumbing.bus import KeyPartitioner, murmur2


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
