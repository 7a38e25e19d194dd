"""Export the event models as JSON Schema files (committed under schemas/json/)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import EVENT_MODELS

SCHEMA_DIR = Path(__file__).with_name("json")


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, deterministic (sorted keys, trailing newline)."""
    rendered = {}
    for name, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://fraudstream.dev/schemas/{name}.schema.json"
        rendered[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def export_schemas(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render_schemas().items():
        target = out_dir / filename
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
