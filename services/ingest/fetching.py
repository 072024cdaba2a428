"""Gets an upload's bytes: inline base64, a file under the media root, or http(s) fetched safely.

An upload names its own URL, so fetching is an attack surface. http(s) fetches resolve the host
once, refuse loopback, private, link-local and other non-global addresses (unless the operator
allows a network), connect to exactly the address that was checked, re-check every redirect and
cap the bytes while streaming. One deadline bounds the whole fetch of an upload: every attempt,
redirect, connection, header and byte. ``file://`` is confined to ``ERASER_MEDIA_ROOT``. The bytes
are returned, never logged.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urljoin, urlsplit

from services.ingest.transport import Deadline, Pin, PinnedHTTP, PinnedHTTPS
from services.shared.config import MediaSettings
from services.shared.errors import FetchFailedError, MediaRejectedError, TransientError
from services.shared.schemas import UploadReceived

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    """An upload's bytes and where they came from (a metrics label)."""

    data: bytes
    source: Literal["inline", "file", "http"]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchFailedError("host does not resolve") from None
    return [str(info[4][0]) for info in infos]


class MediaFetcher:
    """Fetches media under the limits in :class:`MediaSettings`."""

    def __init__(
        self,
        settings: MediaSettings,
        resolver: Resolver = resolve,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._resolver = resolver
        self._sleep = sleep

    def fetch(self, upload: UploadReceived) -> Fetched:
        """The upload's bytes.

        Raises:
            MediaRejectedError: the reference or payload breaks a rule.
            FetchFailedError: the media is missing or stayed unavailable after retries.
        """
        if upload.media_b64 is not None:
            return Fetched(self._inline(upload.media_b64), "inline")
        url = upload.media_url or ""
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            return Fetched(self._file(url), "file")
        if scheme in ("http", "https"):
            return Fetched(self._http(url), "http")
        raise MediaRejectedError(f"unsupported URL scheme {scheme[:16]!r}")

    def _inline(self, encoded: str) -> bytes:
        if len(encoded) > (self._settings.max_media_bytes + 2) // 3 * 4:
            raise MediaRejectedError("media_b64 is over the byte cap")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise MediaRejectedError("media_b64 is not valid base64") from None
        if len(data) > self._settings.max_media_bytes:
            raise MediaRejectedError("media_b64 is over the byte cap")
        return data

    def _file(self, url: str) -> bytes:
        root = self._settings.media_root
        if root is None:
            raise MediaRejectedError("file:// media is disabled (ERASER_MEDIA_ROOT is unset)")
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise MediaRejectedError("file:// URL names a remote host")
        path = Path(os.path.realpath(unquote(parts.path)))
        if not path.is_relative_to(os.path.realpath(root)):
            raise MediaRejectedError("file:// path is outside the media root")
        return self._read_regular_file(path)

    def _read_regular_file(self, path: Path) -> bytes:
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer that never comes.
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
                info = os.fstat(file.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise MediaRejectedError("file:// path is not a regular file")
                if info.st_size > self._settings.max_media_bytes:
                    raise MediaRejectedError("media is over the byte cap")
                return file.read(self._settings.max_media_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise FetchFailedError("file not found") from None
        except PermissionError:
            raise FetchFailedError("file not readable") from None

    def _http(self, url: str) -> bytes:
        deadline = Deadline(self._settings.fetch_deadline_s)
        attempts = self._settings.fetch_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._follow(url, deadline)
            except TransientError as error:
                deadline.check()  # a timeout that used up the deadline is reported as such
                if attempt == attempts:
                    raise FetchFailedError(
                        f"unavailable after {attempts} attempts: {error}"
                    ) from None
                self._sleep(deadline.left(0.2 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    def _follow(self, url: str, deadline: Deadline) -> bytes:
        for _ in range(self._settings.fetch_max_redirects + 1):
            response, connection = self._get(url, deadline)
            try:
                if response.status in _REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchFailedError(f"HTTP {response.status} without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status in _RETRYABLE:
                    raise TransientError(f"HTTP {response.status}")
                if response.status != 200:
                    raise FetchFailedError(f"HTTP {response.status}")
                return self._read_capped(response)
            finally:
                response.close()
                connection.close()
        raise FetchFailedError("too many redirects")

    def _get(
        self, url: str, deadline: Deadline
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if scheme not in ("http", "https"):
            raise MediaRejectedError(f"redirect to unsupported scheme {scheme[:16]!r}")
        if not host or parts.username or parts.password:
            raise MediaRejectedError("URL has no host, or carries credentials")
        self._check_host(host)
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise MediaRejectedError("URL has an invalid port") from None
        address = self._checked_address(host, port)
        pin = Pin(address, deadline, self._settings)
        connection = (PinnedHTTPS if scheme == "https" else PinnedHTTP)(host, port, pin)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("GET", target, headers={"User-Agent": "eraser", "Accept": "image/*"})
            return connection.getresponse(), connection
        except (OSError, http.client.HTTPException) as error:  # timeouts, refusals, TLS errors
            connection.close()
            raise TransientError(f"connection failed ({type(error).__name__})") from None
        except FetchFailedError:
            connection.close()
            raise

    def _check_host(self, host: str) -> None:
        allowed = self._settings.fetch_allowed_hosts
        if allowed and not any(host == name or host.endswith("." + name) for name in allowed):
            raise MediaRejectedError("host is not on the fetch allowlist")

    def _checked_address(self, host: str, port: int) -> str:
        addresses = self._resolver(host, port)
        if not addresses:
            raise FetchFailedError("host does not resolve")
        for text in addresses:
            if not self._reachable(ipaddress.ip_address(text.split("%")[0])):
                raise MediaRejectedError("host resolves to a private or reserved address")
        return addresses[0]

    def _reachable(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._settings.fetch_allowed_networks):
            return True
        if isinstance(address, ipaddress.IPv6Address) and (address.sixtofour or address.teredo):
            return False  # tunnels can wrap a private IPv4 address
        return address.is_global and not address.is_multicast

    def _read_capped(self, response: http.client.HTTPResponse) -> bytes:
        cap = self._settings.max_media_bytes
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise MediaRejectedError("media is over the byte cap")
        chunks, size = [], 0
        try:
            # read1: whatever has arrived, so the cap is checked as bytes come in; the connection
            # (services.ingest.transport) keeps every wait inside the deadline.
            while chunk := response.read1(_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise MediaRejectedError("media is over the byte cap")
                chunks.append(chunk)
        except (OSError, http.client.HTTPException) as error:
            raise TransientError(f"transfer failed ({type(error).__name__})") from None
        return b"".join(chunks)
