"""Results: what an audit found, as typed records (one per stage, every model, every check) with a versioned JSON
form, so that the JSON written next to a report is the whole record and rebuilds the page on its own. Version 3;
version-2 files are read through `upgrade_v2`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from kdscope.core.io import atomic_write
from kdscope.results.attacks import AttacksStage
from kdscope.results.maps import CamsStage, ExplanationsStage, GalleryStage
from kdscope.results.models import ModelRecord
from kdscope.results.predictions import PredictionsStage
from kdscope.results.probes import ProbesStage
from kdscope.results.representations import CKAStage
from kdscope.results.sanity import SanityStage
from kdscope.results.upgrade import upgrade_v2
from kdscope.results.values import SchemaError, Unavailable, or_unavailable, sequence
from kdscope.results.verdicts import CheckRecord

T = TypeVar("T")
SCHEMA_VERSION = 3
UPGRADES = {2: upgrade_v2}

StageRecord = (PredictionsStage | CKAStage | CamsStage | ExplanationsStage | GalleryStage | AttacksStage | ProbesStage
               | SanityStage | Unavailable)
STAGE_RECORDS: dict[str, type] = {
    "predictions": PredictionsStage, "cka": CKAStage, "cams": CamsStage, "explanations": ExplanationsStage,
    "gallery": GalleryStage, "attacks": AttacksStage, "probes": ProbesStage, "sanity": SanityStage}
"""Each audit stage's record type, by the stage's name (a stage that could not run at all is an Unavailable)."""


def stage_from_plain(name: str, plain: object) -> StageRecord:
    """The record of stage `name` from its JSON data; a SchemaError that names the stage and the missing key."""
    if name not in STAGE_RECORDS:
        raise SchemaError(f"has the unknown stage '{name}'")
    return _within(f"the stage '{name}'", lambda: or_unavailable(plain, STAGE_RECORDS[name].from_plain))


def _within(where: str, read: Callable[[], T]) -> T:
    """read(), with `where` put before the message of any error in the data it reads."""
    try:
        return read()
    except (SchemaError, TypeError, ValueError, AttributeError) as error:
        raise SchemaError(f"{where} {error}") from error


@dataclass
class Results:
    """Models (name, role, lineage, profile), the plan that ran, one record per stage, the data audited, the
    pass/fail checks and who made it."""

    models: list[ModelRecord]
    plan: dict
    stages: dict[str, StageRecord] = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    checks: list[CheckRecord] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def teacher(self) -> ModelRecord:
        """The reference every other model is compared with: the first with role 'teacher', else the first (the
        audit's rule)."""
        return next((m for m in self.models if m.role == "teacher"), self.models[0])

    @property
    def control(self) -> ModelRecord | None:
        """The independent student, the distilled student's control: the first with role 'independent_student'."""
        return next((m for m in self.models if m.role == "independent_student"), None)

    def model(self, name: str) -> ModelRecord:
        found = next((m for m in self.models if m.name == name), None)
        if found is None:
            raise LookupError(f"no model named {name}")
        return found

    def stage(self, name: str) -> StageRecord:
        """The record of stage `name`, or a LookupError saying that the audit did not run it."""
        if name not in self.stages:
            raise LookupError(f"the audit did not run the '{name}' stage")
        return self.stages[name]

    def record(self, name: str) -> StageRecord | None:
        """The stage's record when it ran; None when it was not in the plan or could not run at all."""
        found = self.stages.get(name)
        return None if isinstance(found, Unavailable) else found

    def to_plain(self) -> dict:
        return {"models": [m.to_plain() for m in self.models], "plan": self.plan,
                "stages": {name: record.to_plain() for name, record in self.stages.items()}, "data": self.data,
                "checks": [c.to_plain() for c in self.checks], "meta": self.meta, "schema_version": SCHEMA_VERSION}

    @classmethod
    def from_plain(cls, raw: object) -> Results:
        """Results from JSON data of this version or one `UPGRADES` reads; a ValueError that says what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object of results, got a JSON {type(raw).__name__}")
        version = raw.get("schema_version")
        if version in UPGRADES:
            try:
                raw = UPGRADES[version](raw)
            except (AttributeError, TypeError, KeyError) as error:
                raise ValueError(f"these version-{version} results are not in the shape kdscope wrote ({error!r}); "
                                 "rerun the audit to write them again") from error
        elif version != SCHEMA_VERSION:
            readable = ", ".join(str(v) for v in (*UPGRADES, SCHEMA_VERSION))
            raise ValueError(f"results schema version {version} is not one this kdscope reads ({readable}); rerun "
                             "the audit with this kdscope or read them with the version that wrote them")
        known = {"models", "plan", "stages", "data", "checks", "meta", "schema_version"}
        missing = [repr(name) for name in ("models", "plan") if name not in raw]
        unknown = [repr(name) for name in sorted(set(raw) - known)]
        if missing or unknown:
            found = [f"lacks the key {', '.join(missing)}"] if missing else []
            found += [f"has the unknown key {', '.join(unknown)}"] if unknown else []
            raise ValueError(f"it {' and '.join(found)}: it was not written by kdscope or was edited; rerun the "
                             "audit to write it again")
        try:
            stages = raw.get("stages", {})
            if not isinstance(stages, dict):
                raise SchemaError("its 'stages' is not a JSON object")
            return cls(models=_within("a model", lambda: sequence(raw["models"], ModelRecord.from_plain)),
                       plan=raw["plan"], stages={name: stage_from_plain(name, plain) for name, plain in stages.items()},
                       data=raw.get("data", {}),
                       checks=_within("a check", lambda: sequence(raw.get("checks", []), CheckRecord.from_plain)),
                       meta=raw.get("meta", {}))
        except SchemaError as error:
            raise ValueError(f"{error}: it was not written by kdscope or was edited; rerun the audit to write it "
                             "again") from error

    def to_json(self) -> str:
        return json.dumps(self.to_plain(), indent=1, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> Results:
        return cls.from_plain(json.loads(text))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write(path, lambda f: f.write(self.to_json().encode()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Results:
        return cls.from_json(Path(path).read_text())

