"""A quick answer to "is there a Kafka broker at all?", before a command waits on one.

kafka-python waits the whole request timeout (30 s) and then raises from deep inside itself when
nothing listens at the bootstrap address. Commands a person runs check first, in a few seconds,
and say which address they tried and what to do.
"""

from __future__ import annotations

import socket

from services.shared.config import KafkaSettings
from services.shared.errors import UsageError


def require_broker(kafka: KafkaSettings, timeout_s: float = 3.0) -> None:
    """Return once one bootstrap server accepts a connection.

    Raises:
        UsageError: none did.
    """
    addresses = [a.strip() for a in kafka.bootstrap_servers.split(",") if a.strip()]
    if not any(_accepts(address, timeout_s) for address in addresses):
        raise UsageError(unreachable(kafka))


def unreachable(kafka: KafkaSettings) -> str:
    """What to tell a person when no broker answers at ``kafka``'s bootstrap servers."""
    return (
        f"no Kafka broker answered at {kafka.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): "
        "point it at your cluster, or start `eraser run` and export the address it prints"
    )


def _accepts(address: str, timeout_s: float) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout_s):
            return True
    except (OSError, ValueError):
        return False
