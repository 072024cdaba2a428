"""Programs from Debian packages, fetched for tests with `apt-get download` (no root install)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "debian"


def debian_program(package: str, program: str) -> Path | None:
    """``program`` from PATH, or from ``package`` unpacked into .cache/; None if unobtainable."""
    unpacked = CACHE / package / "usr" / "bin" / program
    if unpacked.exists():
        return unpacked
    found = shutil.which(program)
    if found:
        return Path(found)
    try:
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(
                ["apt-get", "download", package],
                cwd=folder,
                check=True,
                capture_output=True,
                timeout=300,
            )
            (deb,) = Path(folder).glob("*.deb")
            (CACHE / package).mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["dpkg-deb", "-x", str(deb), str(CACHE / package)],
                check=True,
                capture_output=True,
                timeout=300,
            )
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return unpacked if unpacked.exists() else None
