"""A misbehaving web origin for the hostile-input corpus, on loopback addresses only.

It serves a photo, redirects anywhere it is asked to, stalls, drips bytes, and sends more than its
Content-Length says (or none). :mod:`services.bench.hostile` points uploads at it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ORIGIN_HOST = "127.0.0.2"  # the one loopback address the corpus deployment may fetch from


class Origin:
    """A small web server that serves a photo, redirects, stalls, drips and lies about sizes.

    Eraser may fetch from 127.0.0.2 only; the same server also answers on 127.0.0.1 and [::1],
    so a loopback fetch that eraser failed to refuse would succeed and get a normal verdict,
    which the case counts as a failure.
    """

    def __init__(self, photo: bytes) -> None:
        handler = type("Handler", (_OriginHandler,), {"photo": photo})
        self._servers = _serve_on_loopback(handler)
        self.port = int(self._servers[0].server_address[1])
        self.url = f"http://{ORIGIN_HOST}:{self.port}"
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        for server in self._servers:
            server.shutdown()
            server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # eraser hangs up on the stalling and dripping routes on purpose


class _QuietServer6(_QuietServer):
    address_family = socket.AF_INET6


def _serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> list[_QuietServer]:
    """Servers on 127.0.0.2, 127.0.0.1 and (where the host has it) [::1], all on one port."""
    for _ in range(20):
        servers = [_QuietServer((ORIGIN_HOST, 0), handler)]
        port = servers[0].server_address[1]
        try:
            servers.append(_QuietServer(("127.0.0.1", port), handler))
        except OSError:  # that port is taken on 127.0.0.1: try another
            servers[0].server_close()
            continue
        with contextlib.suppress(OSError):  # no IPv6 loopback: [::1] cannot be fetched anyway
            servers.append(_QuietServer6(("::1", port), handler))
        return servers
    raise RuntimeError("no port free on both 127.0.0.2 and 127.0.0.1")


class _OriginHandler(BaseHTTPRequestHandler):
    photo = b""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        size = int(query.removeprefix("n=")) if query.startswith("n=") else 0
        if path == "/photo.jpg":
            self._reply(200, self.photo)
        elif path == "/to":
            self.send_response(302)
            self.send_header("Location", query.removeprefix("u="))
            self.end_headers()
        elif path == "/slow":
            time.sleep(3)
            self._reply(200, self.photo)
        elif path == "/drip":
            self._head(200, "1000")
            self._drip(self.photo[:1000])
        elif path == "/drip-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._drip(b"X-Padding: " + b"x" * 1000)
        elif path in ("/unsized", "/understated"):
            self._head(200, None if path == "/unsized" else "1024")
            self.wfile.write(os.urandom(size))
        else:
            self._reply(404, b"")

    def _head(self, status: int, length: str | None) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()

    def _reply(self, status: int, body: bytes) -> None:
        self._head(status, str(len(body)))
        self.wfile.write(body)

    def _drip(self, data: bytes) -> None:
        for byte in data:  # until eraser hangs up and a write fails
            self.wfile.write(bytes([byte]))
            time.sleep(0.1)

    def log_message(self, format: str, *args: Any) -> None:
        return None
