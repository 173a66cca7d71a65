"""Pass/fail checks on audit Results, for gating a CI run: `cam_agreement >= 0.6`, `int8_top1_agreement >= 99%`,
`kd_student.accuracy_drop <= 0.02`.

A check is `[SELECTOR]METRIC OP VALUE`. The selector is a group prefix (`int8_`, `pruned_`, `student_`,
`independent_`, `teacher_`) or a model name followed by a dot; without one, a check covers every model compared with
the teacher (and the teacher too for its own metrics, such as accuracy). A check passes when every model it covers
passes; a metric the audit did not measure, or a selector matching no model, fails with the reason.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable

from kdscope.results.schema import Results

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
GROUPS: dict[str, Callable[[dict], bool]] = {
    "int8": lambda m: m["role"] == "quantized" or str(m.get("method") or "").startswith("quantize"),
    "pruned": lambda m: m["role"] == "pruned",
    "student": lambda m: m["role"] == "student",
    "independent": lambda m: m["role"] == "independent_student",
    "teacher": lambda m: m["role"] == "teacher",
}
_CHECK = re.compile(r"^\s*(?P<subject>[\w.\-]+?)\s*(?P<op>>=|<=|==|>|<)\s*(?P<value>[-+]?[\d.]+(?:e[-+]?\d+)?%?)\s*$",
                    re.IGNORECASE)


def _estimate(value: object) -> float | None:
    return value[0] if isinstance(value, list) else value


def _stage(results: Results, stage: str) -> dict:
    if stage not in results.stages:
        raise LookupError(f"the audit did not run the '{stage}' stage")
    return results.stages[stage]


def _teacher(results: Results) -> dict:
    return next((m for m in results.models if m["role"] == "teacher"), results.models[0])


def _accuracy(results: Results, model: str) -> float:
    return _estimate(_stage(results, "predictions")["models"][model]["accuracy"])


def _versus(results: Results, model: str, key: str) -> float:
    return _estimate(_stage(results, "predictions")["versus_teacher"][model][key])


def _maps(results: Results, model: str, method: str) -> float:
    methods = _stage(results, "cams")["methods"]
    if method not in methods:
        raise LookupError(f"the plan's explainers did not include {method}")
    entry = methods[method][model]
    if "error" in entry:
        raise LookupError(entry["error"])
    return _estimate(entry["cosine"])


def _cka(results: Results, model: str) -> float:
    grids = _stage(results, "cka")["grids"]
    if model not in grids:
        raise LookupError(f"no CKA grid for {model} (an int8 model has no float layers to tap)")
    return grids[model]["values"][-1][-1]


def _transfer(results: Results, model: str) -> float:
    matrix = _stage(results, "attacks")["matrices"][0]
    teacher = _teacher(results)["name"]
    cell = next((c for c in matrix["cells"] if c["source"] == teacher and c["target"] == model), None)
    if cell is None:
        raise LookupError(f"no transfer cell from {teacher} to {model}")
    return _estimate(cell["conditional"])


def _robust(results: Results, model: str) -> float:
    curves = _stage(results, "attacks").get("robust_curves")
    if not curves:
        raise LookupError("the audit drew no robust-accuracy curve (no attack with an eps, or robust_eps empty)")
    eps = next((c["eps"] for c in results.plan["attacks"] if "eps" in c), None)
    points = curves["models"][model]
    point = min(points, key=lambda p: abs(p["eps"] - eps))
    return _estimate(point["accuracy"])


def _pointing(results: Results, model: str) -> float:
    entry = _stage(results, "explanations")
    if "skipped" in entry:
        raise LookupError(entry["skipped"])
    found = entry[model].get("gradcam", {})
    if "pointing_game" not in found:
        raise LookupError(found.get("error", "the plan's explainers did not include gradcam"))
    return _estimate(found["pointing_game"])


def _sanity(results: Results, model: str) -> float:
    checks = [c for c in _stage(results, "sanity")[model] if "verdict" in c]
    if not checks:
        raise LookupError("no sanity check could run on this model")
    return sum(c["verdict"] == "pass" for c in checks) / len(checks)


def _ratio(results: Results, model: str, key: str) -> float:
    profiles = {m["name"]: m["profile"] for m in results.models}
    return profiles[model][key] / profiles[_teacher(results)["name"]][key]


def _profile(results: Results, model: str, key: str) -> float:
    value = next(m for m in results.models if m["name"] == model)["profile"].get(key)
    if value is None:
        raise LookupError(f"{model} has no {key}")
    return value


METRICS: dict[str, tuple[bool, Callable[[Results, str], float]]] = {
    # name: (applies to the teacher too, getter)
    "accuracy": (True, _accuracy),
    "accuracy_drop": (False, lambda r, m: _accuracy(r, _teacher(r)["name"]) - _accuracy(r, m)),
    "top1_agreement": (False, lambda r, m: _versus(r, m, "top1_agreement")),
    "kl": (False, lambda r, m: _versus(r, m, "kl")),
    "ece": (True, lambda r, m: _estimate(_stage(r, "predictions")["models"][m]["ece"])),
    "cam_agreement": (False, lambda r, m: _maps(r, m, "gradcam")),
    "gradient_agreement": (False, lambda r, m: _maps(r, m, "gradient")),
    "cka": (False, _cka),
    "transfer_rate": (False, _transfer),
    "robust_accuracy": (True, _robust),
    "pointing_game": (True, _pointing),
    "sanity_pass": (True, _sanity),
    "size_ratio": (False, lambda r, m: _ratio(r, m, "file_bytes")),
    "latency_ratio": (False, lambda r, m: _ratio(r, m, "cpu_latency_ms")),
    "sparsity": (False, lambda r, m: _profile(r, m, "sparsity")),
}


def parse_check(text: str) -> tuple[str | None, str, str, float]:
    """(selector, metric, operator, threshold) from one check; a clear error for anything else."""
    match = _CHECK.match(text)
    if match is None:
        raise ValueError(f"cannot read the check {text!r}: write METRIC OP VALUE, e.g. 'cam_agreement >= 0.6' "
                         f"(OP one of {', '.join(OPERATORS)})")
    subject, op, raw = match["subject"], match["op"], match["value"]
    threshold = float(raw.rstrip("%")) / (100 if raw.endswith("%") else 1)
    if "." in subject:
        selector, metric = subject.rsplit(".", 1)
    else:
        metric = next((m for m in sorted(METRICS, key=len, reverse=True)
                       if subject == m or subject.endswith(f"_{m}")), None)
        selector = subject[: -len(metric) - 1] if metric and subject != metric else None
        if metric is None:
            metric = subject
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} in check {text!r}; metrics: {', '.join(METRICS)}")
    if selector is not None and "." not in subject and selector not in GROUPS:
        raise ValueError(f"unknown group {selector!r} in check {text!r}; groups: {', '.join(GROUPS)} "
                         "(or name a model: MODEL.metric)")
    return selector, metric, op, threshold


def evaluate_checks(results: Results, checks: Iterable[str]) -> list[dict]:
    """One record per check: which models it covered, each model's value, and whether all passed."""
    records = []
    for text in checks:
        selector, metric, op, threshold = parse_check(text)
        with_teacher, getter = METRICS[metric]
        if selector in GROUPS:
            models = [m for m in results.models if GROUPS[selector](m)]
        elif selector is not None:
            models = [m for m in results.models if m["name"] == selector]
        else:
            models = [m for m in results.models if with_teacher or m is not _teacher(results)]
        rows = []
        for model in models:
            try:
                value = float(getter(results, model["name"]))
                rows.append({"model": model["name"], "value": value, "passed": OPERATORS[op](value, threshold)})
            except (LookupError, TypeError, ZeroDivisionError) as error:
                rows.append({"model": model["name"], "value": None, "passed": False,
                             "note": f"not measured: {str(error).strip(chr(39))}"})
        note = None if models else f"no model matches {selector!r}"
        records.append({"check": text.strip(), "metric": metric, "operator": op, "threshold": threshold,
                        "models": rows, "passed": bool(rows) and all(r["passed"] for r in rows), "note": note})
    return records


def failures(records: list[dict]) -> list[str]:
    """One line per failed check and model, for the terminal."""
    lines = []
    for record in records:
        if record["note"]:
            lines.append(f"FAIL {record['check']}: {record['note']}")
        for row in record["models"]:
            if not row["passed"]:
                shown = row.get("note") or f"{row['value']:.4g}"
                lines.append(f"FAIL {record['check']}: {row['model']} = {shown}")
    return lines
