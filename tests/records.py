"""Kafka records built by hand, for tests that drive handlers and the loop without a broker."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord


def record(value, *, topic="t", partition=0, offset=0, key=None, headers=()):
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        leader_epoch=-1,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        headers=list(headers),
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        serialized_header_size=-1,
    )
