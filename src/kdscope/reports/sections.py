"""The report's content, built from Results alone: one entry per section, each a list of blocks (text, table,
figure, gallery) that the template lays out. No computation on models happens here; only arranging numbers."""

from __future__ import annotations

import numpy as np

from kdscope.reports import figures, images
from kdscope.reports.formatting import kilobytes, number, percent, points_ci, rate_ci, value_ci
from kdscope.results.maps import GalleryStage, OjhaRecord
from kdscope.results.models import profile_ratio
from kdscope.results.probes import PairedOutcome
from kdscope.results.schema import Results
from kdscope.results.values import Unavailable

ROLE_LABELS = {"teacher": "teacher", "student": "distilled student", "independent_student": "independent control",
               "pseudo_label_student": "pseudo-label control", "random_teacher_student": "random-teacher control",
               "other_teacher_student": "other-teacher control", "pruned": "pruned", "quantized": "quantized"}


def _text(text: str) -> dict:
    return {"kind": "text", "text": text}


def _table(columns: list[str], rows: list[list], caption: str | None = None) -> dict:
    return {"kind": "table", "columns": columns, "rows": rows, "caption": caption}


def _figure(spec: dict) -> dict:
    return {"kind": "figure", "spec": spec}


def _missing(results: Results, stage: str) -> list[dict]:
    """Why a stage has no record: not in the plan, or it could not run at all (with the reason)."""
    found = results.stages.get(stage)
    if isinstance(found, Unavailable):
        return [_text(f"The '{stage}' stage could not run: {found.reason}.")]
    return [_text(f"The '{stage}' stage was not in this audit's plan.")]


def _unavailable(entry: Unavailable) -> dict:
    return {"text": f"unavailable: {entry.reason}", "class": "note"}


def _verdict(passed: bool) -> dict:
    return {"text": "pass" if passed else "FAIL", "class": "pass" if passed else "fail"}


def summary(results: Results, findings: list[str]) -> list[dict]:
    blocks = [{"kind": "list", "items": findings}]
    if results.checks:
        rows = []
        for record in results.checks:
            detail = "; ".join(f"{r.model} = {r.note or format(r.value, '.4g')}" for r in record.models)
            rows.append([record.check, detail or record.note or "-", _verdict(record.passed)])
        blocks.append(_table(["check", "values", "verdict"], rows))
    else:
        blocks.append(_text("No pass/fail checks were given (kdscope audit --checks 'cam_agreement >= 0.6' ...)."))
    return blocks


def models(results: Results) -> list[dict]:
    predictions = results.record("predictions")
    accuracy = {name: m.accuracy for name, m in predictions.models.items()} if predictions else {}
    teacher = results.teacher
    rows = []
    for model in results.models:
        profile = model.profile
        size_ratio = profile_ratio(model, teacher, "file_bytes")
        latency, latency_ratio = profile.cpu_latency_ms, profile_ratio(model, teacher, "cpu_latency_ms")
        quantized = (f"{profile.quantized_layers} int8, {profile.float_layers} float"
                     if profile.quantized_layers is not None else "-")
        rows.append([model.name, ROLE_LABELS.get(model.role, model.role), model.method or "trained",
                     model.parent or "-", rate_ci(accuracy.get(model.name)),
                     number(profile.parameters), number(profile.nonzero_parameters),
                     f"{kilobytes(profile.file_bytes)} ({size_ratio:.2f}x)" if size_ratio else "-",
                     f"{latency:.2f} ms ({latency_ratio:.2f}x)" if latency_ratio else number(latency, ".2f"),
                     percent(profile.sparsity), quantized])
    blocks = [_table(["model", "role", "made by", "parent", "accuracy [95% CI]", "parameters", "non-zero",
                      "weights (vs teacher)", "CPU latency, batch 64 (vs teacher)", "sparsity", "quantized layers"],
                     rows, "Accuracy on the audit images; size from each model's lineage (a pruned model is stored "
                           "dense with its masks: its compression is the non-zero count); latency measured in this "
                           "audit's run, so the ratios compare like with like.")]
    if accuracy:
        names = [m.name for m in results.models]
        blocks.append(_figure(figures.interval_bars(
            "Accuracy on the audit images", names, {"accuracy": [accuracy.get(n) for n in names]}, "accuracy",
            (0, 1))))
    hyper = [[m.name, m.method or "trained",
              ", ".join(f"{k}={v}" for k, v in (m.hyperparameters or {}).items()) or "-"] for m in results.models]
    blocks.append({"kind": "details", "summary": "Lineage hyper-parameters",
                   "blocks": [_table(["model", "method", "hyper-parameters"], hyper)]})
    return blocks


def agreement(results: Results) -> list[dict]:
    stage = results.record("predictions")
    if stage is None:
        return _missing(results, "predictions")
    rows = [[name, rate_ci(versus.top1_agreement), value_ci(versus.kl), value_ci(versus.js),
             value_ci(stage.models[name].ece)] for name, versus in stage.versus_teacher.items()]
    blocks = [_table(["model", "top-1 agreement", "KL(teacher || model)", "JS", "ECE"], rows,
                     f"Each model against the teacher ({results.teacher.name}) on the same images; 95% bootstrap "
                     "intervals over images.")]
    cams = results.record("cams")
    if cams is None:
        return blocks + _missing(results, "cams")
    for method, per_model in cams.methods.items():
        rows, top_percent = [], 20
        for name, entry in per_model.items():
            if isinstance(entry, Unavailable):
                rows.append([name, _unavailable(entry), "", ""])
                continue
            top_percent = entry.top_percent
            rows.append([name, value_ci(entry.cosine), value_ci(entry.spearman), value_ci(entry.top_iou)])
        blocks.append(_table(["model", f"{method} cosine", f"{method} Spearman", f"{method} top-{top_percent}% IoU"],
                             rows, f"Each model's {method} maps of the true class against the teacher's, image by "
                                   "image."))
    if isinstance(cams.ojha, OjhaRecord):
        ojha = cams.ojha
        control = (f"With a second independent student ({ojha.second_control}) in the distilled student's place, "
                   f"the share is {rate_ci(ojha.control_closer)}: how far from 50% chance alone goes."
                   if isinstance(ojha.control_closer, tuple) else f"Its control: {ojha.control_closer.reason}.")
        blocks.append(_text(
            f"Ojha et al.'s test: the teacher's Grad-CAM is closer (cosine) to the distilled student's "
            f"({ojha.student}) than to its independent control's ({ojha.control}) on "
            f"{rate_ci(ojha.distilled_closer)} of images. 50% is no effect; the interval says whether this audit "
            f"can tell. {control}"))
    else:
        blocks.append(_text(f"Ojha et al.'s test: unavailable: {cams.ojha.reason}."))
    return blocks


def explanations(results: Results) -> list[dict]:
    blocks = []
    stage = results.record("explanations")
    if stage is None:
        blocks += _missing(results, "explanations")
    else:
        methods = sorted({method for per_method in stage.models.values() for method in per_method})
        rows = [[name] + [_localisation(per_method.get(m)) for m in methods]
                for name, per_method in stage.models.items()]
        blocks.append(_table(["model"] + [f"{m}: pointing game / relevance mass" for m in methods], rows,
                             "Localisation against the ground-truth object masks."))
    gallery = results.record("gallery")
    if gallery is None:
        return blocks + _missing(results, "gallery")
    blocks.append({"kind": "legend", "bar": images.data_uri(images.colour_bar()),
                   "text": f"|map| from 0 to the {images.PERCENTILE:g}th percentile of the row: one scale per image "
                           "and method, shared by every model in the row."})
    for position, (method, per_model) in enumerate(gallery.methods.items()):
        blocks.append({"kind": "gallery", "title": f"{method}: each model's map of the true class",
                       "open": position == 0,
                       "columns": ["input", *per_model], "rows": _gallery_rows(gallery, per_model)})
    return blocks


def _localisation(entry: object) -> str | dict:
    if entry is None:
        return "-"
    if isinstance(entry, Unavailable):
        return _unavailable(entry)
    return f"{rate_ci(entry.pointing_game)} / {value_ci(entry.relevance_mass, 2)}"


def _gallery_rows(gallery: GalleryStage, per_model: dict) -> list[dict]:
    rows = []
    class_names = gallery.class_names
    for index, pixels in enumerate(gallery.images):
        image = np.asarray(pixels, dtype=np.uint8)
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        usable = {name: np.asarray(maps[index]) for name, maps in per_model.items()
                  if not isinstance(maps, Unavailable)}
        scale = images.shared_scale(list(usable.values())) if usable else 1.0
        label = gallery.labels[index]
        cells = [{"src": images.data_uri(images.enlarge(image)), "caption": f"true: {class_names[label]}",
                  "alt": f"input, true class {class_names[label]}"}]
        for name, maps in per_model.items():
            if isinstance(maps, Unavailable):
                cells.append({"src": None, "caption": maps.reason, "alt": name})
                continue
            predicted = gallery.predictions[name][index]
            mark = "✓" if predicted == label else f"✗ {class_names[predicted]}"
            cells.append({"src": images.data_uri(images.overlay(image, usable[name], scale)), "caption": mark,
                          "alt": f"{name}: {mark}"})
        rows.append({"cells": cells})
    return rows


def sanity(results: Results) -> list[dict]:
    stage = results.record("sanity")
    if stage is None:
        return _missing(results, "sanity")
    rows, by_method = [], {}
    for name, per_method in stage.models.items():
        for method, check in per_method.items():
            if isinstance(check, Unavailable):
                rows.append([name, method, "-", f"unavailable: {check.reason}", "-", "-", "-"])
                continue
            verdict = _verdict(check.verdict == "pass")
            if check.verdict not in ("pass", "fail"):
                verdict = {"text": check.verdict, "class": "fail"}
            rows.append([name, method, check.kind, value_ci(check.final_similarity()), f"< {check.threshold}",
                         verdict, check.reason])
            by_method.setdefault(method, {})[name] = check
    blocks = [_table(["model", "method", "randomisation", "Spearman |map| with every layer randomised",
                      "pass when", "verdict", "why"], rows,
                     "Adebayo et al.'s model-randomisation test: a saliency method that keeps its maps when the "
                     "weights are destroyed does not explain the model.")]
    for method, checks in by_method.items():
        series = {name: ([s.step for s in c.steps], [s.similarity["spearman_abs"] for s in c.steps])
                  for name, c in checks.items() if c.steps}
        threshold = next(iter(checks.values())).threshold
        blocks.append(_figure(figures.interval_lines(
            f"Cascading randomisation: {method}", series, "layers randomised, from the top",
            "Spearman |map| vs original", threshold)))
    return blocks


def attacks(results: Results) -> list[dict]:
    stage = results.record("attacks")
    if stage is None:
        return _missing(results, "attacks")
    blocks = []
    for matrix in stage.matrices:
        names, params = matrix.models, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in matrix.params.items())
        cells = {(c.source, c.target): c for c in matrix.cells}
        values = [[cells[(s, t)].conditional[0] if (s, t) in cells else None for t in names] for s in names]
        blocks.append(_figure(figures.heatmap(
            f"Transfer of {matrix.attack} ({params}): conditional rate", values, names, names, "target",
            "source", colour_scale="Reds")))
        rows = [[s, t, rate_ci(c.conditional), rate_ci(c.unconditional), rate_ci(c.fooling)]
                for (s, t), c in cells.items() if s != t]
        white = [[name, percent(rate)] for name, rate in matrix.white_box_success.items()]
        blocks.append(_table(["model", "white-box success"], white))
        blocks.append({"kind": "details", "summary": f"All transfer rates of {matrix.attack} with intervals",
                       "blocks": [_table(["source", "target", "conditional", "unconditional", "fooling"], rows,
                                         "Conditional: fooled the target among examples that fooled the source "
                                         "and the target got right.")]})
    curves = stage.robust_curves
    if isinstance(curves, Unavailable):
        blocks.append(_text(f"No robust-accuracy curve: {curves.reason}."))
    else:
        series = {name: ([p.eps * 255 for p in points], [p.as_interval() for p in points])
                  for name, points in curves.models.items()}
        blocks.append(_figure(figures.interval_lines(
            f"Robust accuracy under {curves.attack} crafted on each model itself ({curves.images} images)",
            series, "eps × 255", "accuracy")))
    return blocks


def cka(results: Results) -> list[dict]:
    stage = results.record("cka")
    if stage is None:
        return _missing(results, "cka")
    blocks = []
    for name, grid in stage.grids.items():
        if isinstance(grid, Unavailable):
            blocks.append(_text(f"No CKA grid for {name}: {grid.reason}."))
            continue
        blocks.append(_figure(figures.heatmap(
            f"Linear CKA ({'debiased' if grid.debiased else 'biased'}): {results.teacher.name} vs {name}",
            grid.values, grid.rows, grid.columns, name, results.teacher.name)))
        features = ("each layer's output averaged over its positions (a feature map's pixels, a ViT block's tokens)"
                    if grid.reduce == "mean" else "each layer's output flattened, every position kept")
        blocks.append(_text(f"Features: {features}. Control for {name}: the same grid with the image pairing "
                            f"shuffled reaches at most |CKA| = {grid.control_bound():.3f}."))
    return blocks or [_text("No CKA grid: no model besides the teacher.")]


def probes(results: Results) -> list[dict]:
    stage = results.record("probes")
    if stage is None:
        return _missing(results, "probes")
    names = list(dict.fromkeys(n for probe in stage.probes.values() for n in probe.models))
    rows = []
    for name, probe in stage.probes.items():
        paired = probe.paired
        rows.append([name, probe.description] + [_rate(probe.models.get(n)) for n in names] +
                    [points_ci(paired.difference) if isinstance(paired, PairedOutcome) else _unavailable(paired)])
    blocks = [_table(["probe", "what it measures", *names, f"{stage.student or 'student'} − "
                                                          f"{stage.control or 'control'} (paired)"], rows,
                     f"On ProbeWorld variants of the {stage.images} audit images; the independent student is the "
                     "control for what distillation transferred.")]
    blocks.append(_figure(figures.interval_bars(
        "Knowledge-transfer probes", list(stage.probes),
        {n: [_interval(p.models.get(n)) for p in stage.probes.values()] for n in names}, "rate", (0, 1))))
    return blocks


def _rate(rate: object) -> str | dict:
    return _unavailable(rate) if isinstance(rate, Unavailable) else rate_ci(rate)


def _interval(rate: object) -> tuple | None:
    return None if rate is None or isinstance(rate, Unavailable) else rate


def plan(results: Results) -> list[dict]:
    rows = [[key, str(value)] for key, value in results.plan.items()]
    data = [[key, str(value)] for key, value in results.data.items()]
    return [{"kind": "details", "summary": "Plan", "blocks": [_table(["setting", "value"], rows)]},
            {"kind": "details", "summary": "Data", "blocks": [_table(["field", "value"], data)]}]
