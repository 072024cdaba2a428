import base64
import ipaddress
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.ingest.fetching import MediaFetcher
from services.shared.config import IngestSettings, KafkaSettings, MediaSettings
from services.shared.errors import FetchFailedError, MediaRejectedError
from services.shared.schemas import UploadReceived

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def fetcher(tmp_path=None, **settings):
    return MediaFetcher(MediaSettings(media_root=tmp_path, **settings), sleep=lambda _: None)


def by_url(url):
    return UploadReceived(content_id="c", media_url=url)


class Handler(BaseHTTPRequestHandler):
    """Serves canned answers by path: /ok, /big, /redirect?to=..., /flaky, /missing, and slow ones:
    /drip-body, /drip-headers (a byte every 50 ms for 5 s), /slow-503 and /slow-loop (a 503 or a
    redirect to itself after 200 ms)."""

    flaky_calls = 0

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/ok":
            self._send(200, b"image-bytes")
        elif path == "/big":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            self.wfile.write(b"x" * 5000)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query.removeprefix("to="))
            self.end_headers()
        elif path == "/flaky":
            Handler.flaky_calls += 1
            self._send(503 if Handler.flaky_calls < 3 else 200, b"finally")
        elif path == "/drip-body":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self._drip(b"x" * 100)
        elif path == "/drip-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._drip(b"X-Padding: " + b"x" * 98)
        elif path in ("/slow-503", "/slow-loop"):
            time.sleep(0.2)
            self.send_response(503 if path == "/slow-503" else 302)
            self.send_header("Location", path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"")

    def _drip(self, data):
        try:
            for byte in data:
                self.wfile.write(bytes([byte]))
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher hung up, as it should

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_inline_media_is_decoded_and_capped():
    data = os.urandom(3000)
    upload = UploadReceived(content_id="c", media_b64=base64.b64encode(data).decode())
    assert fetcher().fetch(upload).data == data
    with pytest.raises(MediaRejectedError, match="byte cap"):
        fetcher(max_media_bytes=2048).fetch(upload)
    with pytest.raises(MediaRejectedError, match="not valid base64"):
        fetcher().fetch(UploadReceived(content_id="c", media_b64="***"))


def test_file_urls_read_only_under_the_media_root(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"abc")
    assert fetcher(tmp_path).fetch(by_url((tmp_path / "a.jpg").as_uri())).data == b"abc"
    outside = [
        "file:///etc/passwd",
        f"file://{tmp_path}/../{tmp_path.name}/../../etc/passwd",
        f"file://{tmp_path}/%2e%2e/%2e%2e/etc/passwd",
        "file://elsewhere.example/share/a.jpg",
    ]
    for url in outside:
        with pytest.raises(MediaRejectedError):
            fetcher(tmp_path).fetch(by_url(url))


def test_symlinks_cannot_lead_out_of_the_media_root(tmp_path):
    (tmp_path / "escape.jpg").symlink_to("/etc/passwd")
    with pytest.raises(MediaRejectedError, match="outside the media root"):
        fetcher(tmp_path).fetch(by_url((tmp_path / "escape.jpg").as_uri()))


def test_file_urls_need_a_media_root_and_a_regular_file(tmp_path):
    with pytest.raises(MediaRejectedError, match="ERASER_MEDIA_ROOT"):
        fetcher().fetch(by_url("file:///tmp/a.jpg"))
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(MediaRejectedError, match="not a regular file"):
        fetcher(tmp_path).fetch(by_url((tmp_path / "pipe").as_uri()))
    with pytest.raises(FetchFailedError, match="not found"):
        fetcher(tmp_path).fetch(by_url((tmp_path / "gone.jpg").as_uri()))


def test_other_schemes_are_refused():
    for url in ("ftp://example.com/a.jpg", "gopher://x/", "data:image/png;base64,AA=="):
        with pytest.raises(MediaRejectedError, match="scheme"):
            fetcher().fetch(by_url(url))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "0.0.0.0",
        "100.64.0.1",
        "::ffff:127.0.0.1",
        "fe80::1",
        "fc00::1",
        "2002:7f00:1::1",
        "224.0.0.1",
    ],
)
def test_hosts_resolving_to_private_or_reserved_addresses_are_refused(address):
    guarded = MediaFetcher(MediaSettings(), resolver=lambda host, port: [address])
    with pytest.raises(MediaRejectedError, match="private or reserved"):
        guarded.fetch(by_url("http://innocent.example/a.jpg"))


def test_one_bad_address_among_several_is_enough_to_refuse():
    guarded = MediaFetcher(
        MediaSettings(), resolver=lambda host, port: ["93.184.216.34", "10.0.0.1"]
    )
    with pytest.raises(MediaRejectedError):
        guarded.fetch(by_url("https://innocent.example/a.jpg"))


def test_loopback_is_refused_unless_allowed(server):
    with pytest.raises(MediaRejectedError):
        fetcher().fetch(by_url(f"{server}/ok"))
    assert (
        fetcher(fetch_allowed_networks=LOOPBACK).fetch(by_url(f"{server}/ok")).data
        == b"image-bytes"
    )


def test_redirects_are_followed_and_rechecked(server):
    allowed = fetcher(fetch_allowed_networks=LOOPBACK)
    assert allowed.fetch(by_url(f"{server}/redirect?to=/ok")).data == b"image-bytes"
    with pytest.raises(MediaRejectedError, match="private or reserved"):
        allowed.fetch(by_url(f"{server}/redirect?to=http://169.254.169.254/latest/meta-data/"))
    with pytest.raises(MediaRejectedError, match="scheme"):
        allowed.fetch(by_url(f"{server}/redirect?to=file:///etc/passwd"))


def test_the_byte_cap_holds_while_streaming(server):
    capped = fetcher(fetch_allowed_networks=LOOPBACK, max_media_bytes=4096)
    with pytest.raises(MediaRejectedError, match="byte cap"):
        capped.fetch(by_url(f"{server}/big"))


def test_server_errors_are_retried_and_client_errors_are_final(server):
    allowed = fetcher(fetch_allowed_networks=LOOPBACK)
    assert allowed.fetch(by_url(f"{server}/flaky")).data == b"finally"
    with pytest.raises(FetchFailedError, match="HTTP 404"):
        allowed.fetch(by_url(f"{server}/missing"))


def test_an_unreachable_host_fails_after_bounded_attempts():
    closed_port = MediaFetcher(
        MediaSettings(fetch_allowed_networks=LOOPBACK, fetch_connect_timeout_s=0.5),
        sleep=lambda _: None,
    )
    with pytest.raises(FetchFailedError, match="after 3 attempts"):
        closed_port.fetch(by_url("http://127.0.0.1:9/a.jpg"))


def test_the_host_allowlist_applies_to_every_hop(server):
    listed = fetcher(fetch_allowed_networks=LOOPBACK, fetch_allowed_hosts=("127.0.0.1",))
    assert listed.fetch(by_url(f"{server}/ok")).data == b"image-bytes"
    with pytest.raises(MediaRejectedError, match="allowlist"):
        fetcher(fetch_allowed_hosts=("cdn.example.com",)).fetch(by_url(f"{server}/ok"))


def test_credentials_in_urls_are_refused():
    with pytest.raises(MediaRejectedError, match="credentials"):
        fetcher().fetch(by_url("https://user:pass@example.com/a.jpg"))


@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers", "/slow-503", "/slow-loop"])
def test_one_deadline_bounds_the_whole_fetch(server, path):
    # Every single wait is shorter than the read timeout, so only the deadline can stop these: a
    # body or headers dripping a byte at a time, retries of a slow 503, a slow redirect loop.
    slow = MediaFetcher(
        MediaSettings(
            fetch_allowed_networks=LOOPBACK,
            fetch_read_timeout_s=0.4,
            fetch_deadline_s=0.6,
            fetch_attempts=10,
            fetch_max_redirects=20,
        )
    )
    started = time.monotonic()
    with pytest.raises(FetchFailedError, match=r"longer than its 0\.6 s deadline"):
        slow.fetch(by_url(f"{server}{path}"))
    assert time.monotonic() - started < 0.6 + 0.5  # the deadline, and a margin for scheduling


def test_the_deadline_leaves_a_whole_batch_inside_the_poll_interval():
    for interval_ms, batch_size, deadline_s, expected_s in [
        (10_000, 16, 10.0, 0.3125),
        (3_000, 4, 10.0, 0.375),
        (60_000, 1, 10.0, 10.0),
        (60_000, 2, 0.5, 0.5),
    ]:
        settings = IngestSettings(
            kafka=KafkaSettings(max_poll_interval_ms=interval_ms),
            batch_size=batch_size,
            media=MediaSettings(fetch_deadline_s=deadline_s),
        )
        assert settings.media.fetch_deadline_s == expected_s
        assert batch_size * settings.media.fetch_deadline_s <= interval_ms / 1000 / 2
