"""Headline findings in a few sentences, each with its interval and its control: the report's summary and what
`kdscope demo` prints."""

from __future__ import annotations

from kdscope.reports.formatting import points_ci, rate_ci, value_ci
from kdscope.results.maps import MapAgreement, OjhaRecord
from kdscope.results.probes import PairedOutcome
from kdscope.results.schema import Results


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
    if cams and isinstance(cams.ojha, OjhaRecord):
        control = cams.ojha.control_closer
        lines.append(f"The teacher's Grad-CAM is closer to the distilled student's than to the control's on "
                     f"{rate_ci(cams.ojha.distilled_closer)} of images (50% = no effect"
                     + (f"; a second independent student in its place: {rate_ci(control)}" if isinstance(control, tuple)
                        else "") + ").")
    probes = results.record("probes")
    invariance = probes.probes.get("colour_invariance") if probes else None
    if invariance and isinstance(invariance.paired, PairedOutcome):
        lines.append(f"Colour invariance, distilled student minus control: {points_ci(invariance.paired.difference)}.")
    attacks = results.record("attacks")
    if attacks and attacks.matrices:
        matrix = attacks.matrices[0]
        rates = [f"{c.target} {rate_ci(c.conditional, 0)}" for c in matrix.cells
                 if c.source == teacher and c.target != teacher]
        lines.append(f"{matrix.attack} crafted on the teacher transfers to: {'; '.join(rates)}.")
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
