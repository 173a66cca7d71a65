"""Results: what an audit found, as plain data (dicts, lists, numbers, strings) with a schema version, so that the
JSON written next to a report is the whole record and rebuilds the page on its own."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1


@dataclass
class Results:
    """Models (name, role, lineage metrics), the plan that ran, and one entry per stage."""

    models: list[dict]
    plan: dict
    stages: dict[str, dict] = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> Results:
        raw = json.loads(text)
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"results schema version {version} is not {SCHEMA_VERSION}; rerun the audit with this "
                             "kdscope or read them with the version that wrote them")
        return cls(**raw)

    def save(self, path: str | Path) -> Path:
        from kdscope.checkpoint import atomic_write

        path = Path(path)
        atomic_write(path, lambda f: f.write(self.to_json().encode()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Results:
        return cls.from_json(Path(path).read_text())
