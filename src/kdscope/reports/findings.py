"""Headline findings in a few sentences, each with its interval and its control: the report's summary and what
`kdscope demo` prints."""

from __future__ import annotations

from kdscope.reports.formatting import points_ci, rate_ci, value_ci
from kdscope.results.schema import Results


def findings(results: Results) -> list[str]:
    lines = [f"Warning: {warning}" for warning in results.data.get("warnings", [])]
    stages = results.stages
    predictions = stages.get("predictions")
    if predictions:
        teacher = predictions["teacher"]
        audited = predictions.get("images")  # not the plan's `images`: that is a cap, and the data may hold fewer
        where = f"{audited} audit images" if audited else "the audit images"
        lines.append(f"{teacher} (the teacher): accuracy {rate_ci(predictions['models'][teacher]['accuracy'])} on "
                     f"{where}.")
        cams = stages.get("cams", {}).get("methods", {}).get("gradcam", {})
        for name, versus in predictions["versus_teacher"].items():
            cam = cams.get(name, {}).get("cosine")
            lines.append(f"{name}: accuracy {rate_ci(predictions['models'][name]['accuracy'])}, agrees with the "
                         f"teacher on {rate_ci(versus['top1_agreement'])} of images"
                         + (f", Grad-CAM cosine {value_ci(cam, 2)}." if cam else "."))
    ojha = stages.get("cams", {}).get("ojha")
    if ojha and "error" not in ojha:
        lines.append(f"The teacher's Grad-CAM is closer to the distilled student's than to the control's on "
                     f"{rate_ci(ojha['distilled_closer'])} of images (50% = no effect).")
    probes = stages.get("probes", {}).get("probes", {})
    invariance = probes.get("colour_invariance", {}).get("paired")
    if invariance:
        lines.append(f"Colour invariance, distilled student minus control: {points_ci(invariance['difference'])}.")
    attacks = stages.get("attacks", {}).get("matrices")
    if attacks and predictions:
        matrix, teacher = attacks[0], predictions["teacher"]
        rates = [f"{c['target']} {rate_ci(c['conditional'], 0)}" for c in matrix["cells"]
                 if c["source"] == teacher and c["target"] != teacher]
        lines.append(f"{matrix['attack']} crafted on the teacher transfers to: {'; '.join(rates)}.")
    sanity = stages.get("sanity")
    if sanity:
        ran = [(name, c) for name, checks in sanity.items() for c in checks if "verdict" in c]
        failed = [f"{name}/{c['method']}" for name, c in ran if c["verdict"] == "fail"]
        unsure = [f"{name}/{c['method']}" for name, c in ran if c["verdict"] not in ("pass", "fail")]
        passed = len(ran) - len(failed) - len(unsure)
        lines.append(f"Saliency sanity checks: {passed} of {len(ran)} pass"
                     + (f"; failing: {', '.join(failed)}" if failed else "")
                     + (f"; inconclusive (constant maps): {', '.join(unsure)}" if unsure else "") + ".")
    if results.checks:
        failed = [c["check"] for c in results.checks if not c["passed"]]
        lines.append(f"Checks: {len(results.checks) - len(failed)} of {len(results.checks)} pass"
                     + (f"; failing: {', '.join(failed)}." if failed else "."))
    return lines
