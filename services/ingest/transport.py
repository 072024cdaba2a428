"""Connections for ingest's http(s) fetches: to the address already checked, within one deadline.

:mod:`services.ingest.fetching` decides what may be fetched; this module makes each connection go
to exactly the address that was checked (Host header, SNI and certificate still name the host)
and makes every wait on it (connecting, the TLS handshake, sending, each receive of headers and
body) use only the time left before the upload's deadline.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from services.shared.config import MediaSettings
from services.shared.errors import FetchFailedError


class Deadline:
    """The one clock of an upload's fetch: every attempt, redirect, connection, header and byte."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        """Raise if the deadline has passed.

        Raises:
            FetchFailedError: it has.
        """
        if time.monotonic() >= self._end:
            raise FetchFailedError(f"fetch took longer than its {self._seconds:.3g} s deadline")

    def left(self, at_most: float) -> float:
        """The seconds left, but at most ``at_most``; raises like :meth:`check`."""
        self.check()
        return min(at_most, self._end - time.monotonic())


@dataclass(frozen=True)
class Pin:
    """Where a connection goes (the address already checked) and how long it may take."""

    address: str
    deadline: Deadline
    settings: MediaSettings

    def open(self, port: int) -> socket.socket:
        """A TCP connection to the checked address, within the connect timeout and the deadline."""
        timeout = self.deadline.left(self.settings.fetch_connect_timeout_s)
        return socket.create_connection((self.address, port), timeout)

    def wait(self) -> float:
        """How long the next network read or write may wait."""
        return self.deadline.left(self.settings.fetch_read_timeout_s)


class _ClockedSocket:
    """A connected socket whose every send and receive waits only as long as the deadline allows.

    A plain socket timeout starts again with every byte received, so an origin dripping a byte at
    a time (in the headers or the body) would hold ingest for as long as it liked. http.client
    reads the status line, headers and body through :meth:`makefile`, so each receive here is
    bounded by the read timeout and never outlasts the deadline.
    """

    def __init__(self, sock: socket.socket | ssl.SSLSocket, pin: Pin) -> None:
        self._sock = sock
        self._pin = pin
        self._files = 0

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._pin.wait())
        self._sock.sendall(data)

    def recv_into(self, buffer: Any) -> int:
        self._sock.settimeout(self._pin.wait())
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str) -> io.BufferedReader:
        self._files += 1
        return io.BufferedReader(_ClockedReader(self))

    def close(self) -> None:
        # As a plain socket does: http.client closes the connection of a response that ends
        # with the connection, then reads that response through its file; the socket itself
        # closes once the file has closed too.
        if self._files == 0:
            self._sock.close()

    def file_closed(self) -> None:
        self._files -= 1
        self.close()


class _ClockedReader(io.RawIOBase):
    def __init__(self, sock: _ClockedSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._sock.file_closed()


class PinnedHTTP(http.client.HTTPConnection):
    """Connects to the checked address and still speaks to the host (Host header)."""

    def __init__(self, host: str, port: int, pin: Pin) -> None:
        super().__init__(host, port)
        self.pin = pin

    def connect(self) -> None:
        """Connect to the pinned address (called by http.client)."""
        self.sock = _ClockedSocket(self.pin.open(self.port), self.pin)


class PinnedHTTPS(http.client.HTTPSConnection):
    """As :class:`PinnedHTTP`, over TLS that verifies the host name (SNI, certificate)."""

    def __init__(self, host: str, port: int, pin: Pin) -> None:
        super().__init__(host, port)
        self.pin = pin

    def connect(self) -> None:
        """Connect to the pinned address and shake hands (called by http.client)."""
        raw = self.pin.open(self.port)
        try:
            raw.settimeout(self.pin.wait())  # the handshake as a whole (CPython times it as one)
            tls = ssl.create_default_context().wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock = _ClockedSocket(tls, self.pin)
