"""Headline findings in a few sentences, each with its interval and its control: the report's summary and what
`kdscope demo` prints."""

from __future__ import annotations

import math

from kdscope.reports.formatting import points_ci, rate_ci, value_ci
from kdscope.results.attacks import FoolingGap
from kdscope.results.maps import MapAgreement, OjhaRecord
from kdscope.results.predictions import ControlGain
from kdscope.results.probes import PairedOutcome
from kdscope.results.schema import Results
from kdscope.results.values import Unavailable


def findings(results: Results) -> list[str]:
    lines = [f"Warning: {warning}" for warning in results.data.get("warnings", [])]
    teacher = results.teacher.name
    predictions, cams = results.record("predictions"), results.record("cams")
    if predictions:
        lines.append(f"{teacher} (the teacher): accuracy {rate_ci(predictions.accuracy(teacher))} on "
                     f"{predictions.images} audit images.")
        for name, versus in predictions.versus_teacher.items():
            cam = cams.agreement(name, "gradcam") if cams else None
            lines.append(f"{name}: accuracy {rate_ci(predictions.accuracy(name))}, agrees with the teacher on "
                         f"{rate_ci(versus.top1_agreement)} of images"
                         + (f", Grad-CAM cosine {value_ci(cam.cosine, 2)}." if isinstance(cam, MapAgreement) else "."))
    if predictions and predictions.gains:
        lines.append(_gains(predictions.student, predictions.gains))
    if cams and isinstance(cams.ojha, OjhaRecord):
        control = cams.ojha.control_closer
        lines.append(f"The teacher's Grad-CAM is closer to the distilled student's than to the control's on "
                     f"{rate_ci(cams.ojha.distilled_closer)} of images (50% = no effect"
                     + (f"; a second independent student in its place: {rate_ci(control)}" if isinstance(control, tuple)
                        else "") + ").")
    probes = results.record("probes")
    invariance = probes.probes.get("colour_invariance") if probes else None
    if invariance and isinstance(invariance.paired, PairedOutcome):
        lines.append(f"Colour invariance, distilled student minus control: {points_ci(invariance.paired.difference)}"
                     f" ({_verdict(invariance.paired.difference)}).")
        other = next((m for m in results.models if m.role == "other_teacher_student"), None)
        if other is not None and other.name in invariance.models:
            lines.append("Colour invariance per model: " + "; ".join(
                f"{name} {rate_ci(value)}" for name, value in invariance.models.items()
                if not isinstance(value, Unavailable)) + ".")
    attacks = results.record("attacks")
    if attacks and attacks.matrices:
        matrix = attacks.matrices[0]
        rates = [f"{c.target} {rate_ci(c.conditional, 0)}" for c in matrix.cells
                 if c.source == teacher and c.target != teacher]
        lines.append(f"{matrix.attack} crafted on the teacher transfers to: {'; '.join(rates)}.")
        lines.extend(_fooling_gaps(results, matrix.gaps))
    sanity = results.record("sanity")
    if sanity:
        ran = sanity.ran()
        failed = [f"{name}/{c.method}" for name, c in ran if c.verdict == "fail"]
        unsure = [f"{name}/{c.method}" for name, c in ran if c.verdict not in ("pass", "fail")]
        passed = len(ran) - len(failed) - len(unsure)
        lines.append(f"Saliency sanity checks: {passed} of {len(ran)} pass"
                     + (f"; failing: {', '.join(failed)}" if failed else "")
                     + (f"; inconclusive (constant maps): {', '.join(unsure)}" if unsure else "") + ".")
    if results.checks:
        failed = [c.check for c in results.checks if not c.passed]
        lines.append(f"Checks: {len(results.checks) - len(failed)} of {len(results.checks)} pass"
                     + (f"; failing: {', '.join(failed)}." if failed else "."))
    return lines


def _verdict(interval: list[float]) -> str:
    """What a paired interval says, in words: the statistic's sign is shown only when the interval excludes 0."""
    if any(math.isnan(v) for v in interval):
        return "not measured: no image qualified"
    if interval[1] > 0:
        return "interval above 0"
    if interval[2] < 0:
        return "interval below 0"
    return "interval includes 0: no difference shown"


def _gains(student: str, gains: list[ControlGain]) -> str:
    labels = {"independent_student": "independent (no teacher): the KD gain",
              "pseudo_label_student": "pseudo-label (the teacher's argmax): the dark-knowledge part",
              "random_teacher_student": "random teacher", "other_teacher_student": "other teacher"}
    parts, seen = [], set()
    for gain in gains:
        label = labels.get(gain.role, gain.role) if gain.role not in seen else "another independent student"
        seen.add(gain.role)
        parts.append(f"{label} ({gain.control}) {points_ci(gain.accuracy_gain)}, {_verdict(gain.accuracy_gain)}")
    return f"Accuracy of {student} minus its controls, same images: " + "; ".join(parts) + "."


def _fooling_gaps(results: Results, gaps: list[FoolingGap]) -> list[str]:
    """Ojha et al.'s adversarial test: the teacher's row, and a foreign model's (one with no part in either
    student) as its control."""
    roles = {m.name: m.role for m in results.models}
    shown = [g for g in gaps if roles.get(g.source) in ("teacher", "other")]
    return [f"Images crafted on {g.source} fool {g.student} minus {g.control} (among {g.images} that fool "
            f"{g.source} and that both get right): {points_ci(g.difference)}, {_verdict(g.difference)}"
            + (" (the teacher: Ojha et al.'s test)." if roles[g.source] == "teacher" else
               " (a foreign model: the control, no difference expected).") for g in shown]
