"""The admin process with its pages, started beside a Deployment, and Chromium to drive it.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright from PyPI; nothing is
downloaded at test time. The browser tests fail rather than skip when it is missing: CI installs
it (.ci/run).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from services.bench.deployment import Deployment
from services.shared.passwords import hash_secret

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "console-test-token-0123456789"
PASSWORDS = {"ann": "ann-password-123", "bob": "bob-password-123", "lee": "lee-password-123"}
ROLES = {"ann": "reviewer", "bob": "reviewer", "lee": "lead"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Console:
    """``eraser admin`` for a deployment: the API, the review console and the case pages."""

    def __init__(self, deployment: Deployment, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        users = ",".join(f"{n}:{ROLES[n]}:{hash_secret(p)}" for n, p in PASSWORDS.items())
        env = {
            **os.environ,
            **deployment.env,
            "ERASER_ADMIN_HTTP_PORT": str(self.port),
            "ERASER_ADMIN_TOKENS": f"tester:{TOKEN}",
            "ERASER_REVIEW_USERS": users,
            "ERASER_REVIEW_SESSION_KEY": "console-test-session-key-0123456789",
            "ERASER_REVIEW_MEDIA_URL": f"file://{deployment.media_root}/{{content_id}}.bin",
        }
        self._log = open(folder / "admin.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.admin"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        self._wait_until_ready()

    def _wait_until_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"eraser admin exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError("eraser admin did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
