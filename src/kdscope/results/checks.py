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

from kdscope.results.models import ModelRecord, profile_ratio
from kdscope.results.predictions import PredictionsStage
from kdscope.results.schema import Results, StageRecord
from kdscope.results.values import measured
from kdscope.results.verdicts import CheckRecord, CheckValue

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
GROUPS: dict[str, Callable[[ModelRecord], bool]] = {
    "int8": lambda m: m.role == "quantized" or str(m.method or "").startswith("quantize"),
    "pruned": lambda m: m.role == "pruned",
    "student": lambda m: m.role == "student",
    "independent": lambda m: m.role == "independent_student",
    "teacher": lambda m: m.role == "teacher",
}
_CHECK = re.compile(r"^\s*(?P<subject>[\w.\-]+?)\s*(?P<op>>=|<=|==|>|<)\s*(?P<value>[-+]?[\d.]+(?:e[-+]?\d+)?%?)\s*$",
                    re.IGNORECASE)


def _predictions(results: Results) -> PredictionsStage:
    return measured(results.stage("predictions"))


def _stage(results: Results, name: str) -> StageRecord:
    """The stage's record, or a LookupError with the reason it has none."""
    return measured(results.stage(name))


def _maps(results: Results, model: str, method: str) -> float:
    return measured(_stage(results, "cams").agreement(model, method)).cosine[0]


def _cka(results: Results, model: str) -> float:
    return measured(_stage(results, "cka").grid(model)).last_layers()


def _transfer(results: Results, model: str) -> float:
    matrices = _stage(results, "attacks").matrices
    if not matrices:
        raise LookupError("the plan had no attack")
    return measured(matrices[0].cell(results.teacher.name, model)).conditional[0]


def _robust(results: Results, model: str) -> float:
    curves = measured(_stage(results, "attacks").robust_curves)
    eps = next(c["eps"] for c in results.plan["attacks"] if "eps" in c)
    return curves.nearest(model, eps).accuracy


def _pointing(results: Results, model: str) -> float:
    return measured(_stage(results, "explanations").localisation(model, "gradcam")).pointing_game[0]


def _sanity(results: Results, model: str) -> float:
    return _stage(results, "sanity").pass_share(model)


def _ratio(results: Results, model: str, key: str) -> float:
    ratio = profile_ratio(results.model(model), results.teacher, key)
    if ratio is None:
        raise LookupError(f"{model} or the teacher has no {key}")
    return ratio


def _profile(results: Results, model: str, key: str) -> float:
    value = getattr(results.model(model).profile, key)
    if value is None:
        raise LookupError(f"{model} has no {key}")
    return value


METRICS: dict[str, tuple[bool, Callable[[Results, str], float]]] = {
    # name: (applies to the teacher too, getter)
    "accuracy": (True, lambda r, m: _predictions(r).accuracy(m)[0]),
    "accuracy_drop": (False, lambda r, m: _predictions(r).accuracy(r.teacher.name)[0] - _predictions(r).accuracy(m)[0]),
    "top1_agreement": (False, lambda r, m: _predictions(r).versus(m).top1_agreement[0]),
    "kl": (False, lambda r, m: _predictions(r).versus(m).kl[0]),
    "ece": (True, lambda r, m: _predictions(r).models[m].ece[0]),
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


def evaluate_checks(results: Results, checks: Iterable[str]) -> list[CheckRecord]:
    """One record per check: which models it covered, each model's value, and whether all passed."""
    records = []
    for text in checks:
        selector, metric, op, threshold = parse_check(text)
        with_teacher, getter = METRICS[metric]
        if selector in GROUPS:
            models = [m for m in results.models if GROUPS[selector](m)]
        elif selector is not None:
            models = [m for m in results.models if m.name == selector]
        else:
            models = [m for m in results.models if with_teacher or m is not results.teacher]
        rows = []
        for model in models:
            try:
                value = float(getter(results, model.name))
                rows.append(CheckValue(model.name, value, OPERATORS[op](value, threshold)))
            except (LookupError, TypeError, ZeroDivisionError) as error:
                rows.append(CheckValue(model.name, None, False, f"not measured: {str(error).strip(chr(39))}"))
        note = None if models else f"no model matches {selector!r}"
        records.append(CheckRecord(text.strip(), metric, op, threshold, rows,
                                   bool(rows) and all(r.passed for r in rows), note))
    return records


def failures(records: list[CheckRecord]) -> list[str]:
    """One line per failed check and model, for the terminal."""
    lines = []
    for record in records:
        if record.note:
            lines.append(f"FAIL {record.check}: {record.note}")
        for row in record.models:
            if not row.passed:
                lines.append(f"FAIL {record.check}: {row.model} = {row.note or format(row.value, '.4g')}")
    return lines
