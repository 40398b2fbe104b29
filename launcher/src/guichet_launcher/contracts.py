"""contracts/: each service's OpenAPI and one JSON Schema per event type, plus AsyncAPI."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from guichet_launcher.services import SERVICES
from guichet_plumbing.envelope import event_json_schema


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def render(workdir: Path) -> dict[str, str]:
    """Relative path → file content, for everything under contracts/."""
    files: dict[str, str] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in SERVICES:
        # Building an app opens nothing until its lifespan runs; the folder is a throwaway.
        app = spec.create(data_dir=workdir)
        files[f"openapi/{spec.name}.json"] = _dump(app.openapi())
        for event in spec.events:
            schema = event_json_schema(event)
            files[f"events/{event.event_type}.schema.json"] = _dump(schema)
            name = event.event_type
            messages[name] = {
                "name": name,
                "title": name,
                "summary": schema["description"],
                "contentType": "application/json",
                "payload": {"$ref": f"./{name}.schema.json"},
            }
            channels[name] = {
                "address": name,
                "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            }
            operations[f"publish.{name}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"publié par {spec.name}",
            }
    asyncapi = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Guichet — événements",
            "version": "0.1.0",
            "description": "Un sujet Kafka par type d'événement ; clé = subject "
            "(identifiant de la demande).",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
    files["events/asyncapi.yaml"] = yaml.safe_dump(asyncapi, allow_unicode=True, sort_keys=True)
    return files


def write(root: Path) -> list[Path]:
    with tempfile.TemporaryDirectory() as workdir:
        files = render(Path(workdir))
    written = []
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    known = set(files)
    for stale in root.rglob("*"):
        if stale.is_file() and str(stale.relative_to(root)) not in known:
            stale.unlink()
    return written


def check(root: Path) -> list[str]:
    """Paths whose committed content differs from what the code produces."""
    with tempfile.TemporaryDirectory() as workdir:
        files = render(Path(workdir))
    drift = []
    for relative, content in files.items():
        path = root / relative
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            drift.append(relative)
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    drift += sorted(present - set(files))
    return drift
