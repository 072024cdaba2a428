"""Slow hashes of secrets people type: reviewers' passwords and requesters' case PINs.

scrypt from the standard library (RFC 7914), 16 MiB of memory per check, so a stolen hash costs
an attacker as much per guess as a login costs eraser. Stored as ``scrypt$n$r$p$salt$hash``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1
_MAX_MEM = 64 * 1024 * 1024


def hash_secret(secret: str) -> str:
    """A salted scrypt hash of ``secret``, with its parameters."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, N, R, P)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (False for anything malformed)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(secret, bytes.fromhex(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, bytes.fromhex(digest))
    except ValueError:
        return False


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEM, dklen=32)
