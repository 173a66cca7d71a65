"""Results: what an audit found, as plain data (dicts, lists, numbers, strings) with a schema version, so that the
JSON written next to a report is the whole record and rebuilds the page on its own."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from kdscope.core.io import atomic_write

SCHEMA_VERSION = 2


@dataclass
class Results:
    """Models (name, role, lineage, profile), the plan that ran, one entry per stage, and the pass/fail checks."""

    models: list[dict]
    plan: dict
    stages: dict[str, dict] = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> Results:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object of results, got a JSON {type(raw).__name__}")
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"results schema version {version} is not {SCHEMA_VERSION}; rerun the audit with this "
                             "kdscope or read them with the version that wrote them")
        missing = [repr(name) for name in ("models", "plan") if name not in raw]
        unknown = [repr(name) for name in sorted(set(raw) - {f.name for f in fields(cls)})]
        if missing or unknown:
            found = [f"lacks the key {', '.join(missing)}"] if missing else []
            found += [f"has the unknown key {', '.join(unknown)}"] if unknown else []
            raise ValueError(f"it {' and '.join(found)}: it was not written by kdscope or was edited; rerun the "
                             "audit to write it again")
        return cls(**raw)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write(path, lambda f: f.write(self.to_json().encode()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Results:
        return cls.from_json(Path(path).read_text())
