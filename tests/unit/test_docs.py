import re
from pathlib import Path

from services.streams import parse_any

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_json_example_in_the_event_docs_is_a_valid_event():
    text = (DOCS / "events.md").read_text()
    examples = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert len(examples) == 4
    types = [parse_any(example.encode()).type for example in examples]
    assert types == [
        "eraser.upload.v1",
        "eraser.verdict.v1",
        "eraser.action.v1",
        "eraser.registration.v1",
    ]
