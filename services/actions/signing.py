"""Signatures on actions, so a removal service can trust that an action came from eraser.

Each action event carries two CloudEvents extension attributes: ``sigkeyid`` (which key) and
``signature``, the hex HMAC-SHA256 of the event's canonical form under that key. The canonical
form is the event JSON without ``signature``, keys sorted, no whitespace, UTF-8 (RFC 8785 JSON
canonicalisation, which for eraser's string and integer values is exactly what
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` writes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE = "signature"
KEY_ID = "sigkeyid"


def canonical_form(document: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: the event without its signature, canonicalised."""
    unsigned = {name: value for name, value in document.items() if name != SIGNATURE}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(event_json: bytes, key: bytes, key_id: str) -> bytes:
    """The event with ``sigkeyid`` and ``signature`` added."""
    document = json.loads(event_json)
    document[KEY_ID] = key_id
    document[SIGNATURE] = hmac.new(key, canonical_form(document), hashlib.sha256).hexdigest()
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def verify(event_json: bytes, keys: Mapping[str, bytes]) -> bool:
    """Whether the event is signed by one of ``keys`` (key id → key) and unchanged since."""
    try:
        document = json.loads(event_json)
        key = keys[document[KEY_ID]]
        claimed = document[SIGNATURE]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(claimed, str):
        return False
    expected = hmac.new(key, canonical_form(document), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, claimed)
