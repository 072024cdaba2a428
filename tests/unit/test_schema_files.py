import json
from pathlib import Path

from services.cli import main

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_published_json_schemas_match_the_models():
    assert main(["schemas", "--check", "--out", str(SCHEMAS)]) == 0, "run `eraser schemas`"


def test_each_schema_pins_its_event_type():
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        assert schema["properties"]["type"]["const"] == path.stem
