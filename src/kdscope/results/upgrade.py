"""Version-2 results (plain JSON data) as version 3, so that `kdscope report old.json` rebuilds older pages.

What changed (the README lists it): `{"error": reason}` and `{"skipped": reason}` became `{"unavailable": reason}`;
what version 2 left out when it could not be measured is now an explicit `{"unavailable": reason}` (a CKA grid for
a model without layers to tap, Ojha's test without a student and control, robust curves without an eps, a probe rate
with no image to score, a probe without a pairing); Ojha's test gained its control (`control_closer`,
`second_control`), which version 2 did not measure."""

from __future__ import annotations

import copy

from kdscope.results.attacks import NO_EPS_ATTACK, NO_ROBUST_EPS
from kdscope.results.maps import NO_OJHA_PAIR
from kdscope.results.probes import NO_IMAGES_SCORED, NO_PAIR, NOT_PAIRED

NOT_IN_VERSION_2 = "not measured: version-2 results predate it"


def upgrade_v2(raw: dict) -> dict:
    """A version-3 copy of version-2 plain results (the input is left as it is)."""
    raw = copy.deepcopy(raw)
    stages = raw.get("stages")
    if isinstance(stages, dict):
        for name, upgrade in UPGRADES.items():
            if isinstance(stages.get(name), dict):
                stages[name] = upgrade(stages[name], raw)
    raw["schema_version"] = 3
    return raw


def _entry(entry: object) -> object:
    """{"error": reason} -> {"unavailable": reason}; anything else as it is."""
    if isinstance(entry, dict) and set(entry) == {"error"}:
        return {"unavailable": entry["error"]}
    return entry


def _stage(stage: dict) -> dict:
    """A stage that did not run, {"skipped": reason}, -> {"unavailable": reason}."""
    skipped = stage.get("skipped")
    return {"unavailable": skipped} if set(stage) == {"skipped"} and isinstance(skipped, str) else stage


def _cka(stage: dict, raw: dict) -> dict:
    grids = stage.get("grids")
    teacher = stage.get("teacher")
    if isinstance(grids, dict):
        for model in raw.get("models", []):
            name = model.get("name") if isinstance(model, dict) else None
            if name not in grids and name != teacher:
                grids[name] = {"unavailable": f"not measured: version-2 results hold no grid for {name} (it or "
                                              "the teacher had no layers to tap)"}
    return stage


def _cams(stage: dict, _raw: dict) -> dict:
    for per_model in stage.get("methods", {}).values():
        for name, entry in per_model.items():
            per_model[name] = _entry(entry)
    ojha = stage.get("ojha")
    if ojha is None:
        stage["ojha"] = {"unavailable": NO_OJHA_PAIR}
    elif "error" in ojha:
        stage["ojha"] = {"unavailable": ojha["error"]}
    else:
        stage["ojha"] = {**ojha, "control_closer": {"unavailable": NOT_IN_VERSION_2}, "second_control": None}
    return stage


def _explanations(stage: dict, _raw: dict) -> dict:
    stage = _stage(stage)
    if "unavailable" not in stage:
        for per_method in stage.values():
            for method, entry in per_method.items():
                per_method[method] = _entry(entry)
    return stage


def _gallery(stage: dict, _raw: dict) -> dict:
    for per_model in stage.get("methods", {}).values():
        for name, maps in per_model.items():
            per_model[name] = _entry(maps)
    return stage


def _attacks(stage: dict, raw: dict) -> dict:
    if "robust_curves" not in stage:
        plan = raw.get("plan", {})
        with_eps = any("eps" in attack for attack in plan.get("attacks", []))
        stage["robust_curves"] = {"unavailable": NO_ROBUST_EPS if with_eps else NO_EPS_ATTACK}
    return stage


def _probes(stage: dict, _raw: dict) -> dict:
    stage = _stage(stage)
    for name, probe in stage.get("probes", {}).items():
        probe["models"] = {model: {"unavailable": NO_IMAGES_SCORED} if rate is None else rate
                           for model, rate in probe.get("models", {}).items()}
        if "paired" not in probe:
            probe["paired"] = {"unavailable": NOT_PAIRED if name == "shape_bias" else NO_PAIR}
    return stage


def _sanity(stage: dict, _raw: dict) -> dict:
    for checks in stage.values():
        for index, check in enumerate(checks):
            if isinstance(check, dict) and "error" in check:
                checks[index] = {"method": check.get("method"), "unavailable": check["error"]}
    return stage


UPGRADES = {"cka": _cka, "cams": _cams, "explanations": _explanations, "gallery": _gallery, "attacks": _attacks,
            "probes": _probes, "sanity": _sanity}
