import json
import re
from pathlib import Path

from services.actions.signing import sign
from services.streams import parse_any

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_json_example_in_the_event_docs_is_a_valid_event():
    text = (DOCS / "events.md").read_text()
    examples = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert len(examples) == 7
    types = [parse_any(example.encode()).type for example in examples]
    assert types == [
        "eraser.upload.v1",
        "eraser.verdict.v1",
        "eraser.action.v1",
        "eraser.registration.v1",
        "eraser.bank.v1",
        "eraser.audit.v1",
        "eraser.action-result.v1",
    ]


def test_the_documented_verification_snippet_accepts_signed_actions_only():
    text = (DOCS / "events.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(snippet.replace("<the value of ERASER_ACTIONS_SIGNING_KEY>", "doc-test-key"), namespace)
    action = json.loads(re.findall(r"```json\n(.*?)```", text, flags=re.S)[2])
    signed = sign(json.dumps(action).encode(), b"doc-test-key", "1")
    assert namespace["is_from_eraser"](signed)
    assert not namespace["is_from_eraser"](signed.replace(b'"remove"', b'"review"'))
