"""The report's content, built from Results alone: one entry per section, each a list of blocks (text, table,
figure, gallery) that the template lays out. No computation on models happens here; only arranging numbers."""

from __future__ import annotations

import numpy as np

from kdscope.reports import figures, images
from kdscope.reports.formatting import kilobytes, number, percent, points_ci, rate_ci, value_ci
from kdscope.results.schema import Results

ROLE_LABELS = {"teacher": "teacher", "student": "distilled student", "independent_student": "independent control",
               "pruned": "pruned", "quantized": "quantized"}


def _text(text: str) -> dict:
    return {"kind": "text", "text": text}


def _table(columns: list[str], rows: list[list], caption: str | None = None) -> dict:
    return {"kind": "table", "columns": columns, "rows": rows, "caption": caption}


def _figure(spec: dict) -> dict:
    return {"kind": "figure", "spec": spec}


def _missing(stage: str) -> list[dict]:
    return [_text(f"The '{stage}' stage was not in this audit's plan.")]


def _verdict(passed: bool) -> dict:
    return {"text": "pass" if passed else "FAIL", "class": "pass" if passed else "fail"}


def summary(results: Results, findings: list[str]) -> list[dict]:
    blocks = [{"kind": "list", "items": findings}]
    if results.checks:
        rows = []
        for record in results.checks:
            detail = "; ".join(
                f"{r['model']} = {r['note'] if r.get('note') else format(r['value'], '.4g')}" for r in record["models"])
            rows.append([record["check"], detail or record["note"] or "-", _verdict(record["passed"])])
        blocks.append(_table(["check", "values", "verdict"], rows))
    else:
        blocks.append(_text("No pass/fail checks were given (kdscope audit --checks 'cam_agreement >= 0.6' ...)."))
    return blocks


def models(results: Results) -> list[dict]:
    predictions = results.stages.get("predictions", {}).get("models", {})
    teacher = next((m for m in results.models if m["role"] == "teacher"), results.models[0])
    base = teacher["profile"]
    rows = []
    for model in results.models:
        profile = model["profile"]
        size_ratio = profile["file_bytes"] / base["file_bytes"] if base["file_bytes"] else None
        latency = profile.get("cpu_latency_ms")
        latency_ratio = latency / base["cpu_latency_ms"] if latency and base.get("cpu_latency_ms") else None
        quantized = (f"{profile['quantized_layers']} int8, {profile['float_layers']} float"
                     if profile.get("quantized_layers") is not None else "-")
        rows.append([model["name"], ROLE_LABELS.get(model["role"], model["role"]), model.get("method") or "trained",
                     model.get("parent") or "-", rate_ci(predictions.get(model["name"], {}).get("accuracy")),
                     number(profile["parameters"]), number(profile["nonzero_parameters"]),
                     f"{kilobytes(profile['file_bytes'])} ({size_ratio:.2f}x)" if size_ratio else "-",
                     f"{latency:.2f} ms ({latency_ratio:.2f}x)" if latency_ratio else number(latency, ".2f"),
                     percent(profile.get("sparsity")), quantized])
    blocks = [_table(["model", "role", "made by", "parent", "accuracy [95% CI]", "parameters", "non-zero",
                      "weights (vs teacher)", "CPU latency, batch 64 (vs teacher)", "sparsity", "quantized layers"],
                     rows, "Accuracy on the audit images; size from each model's lineage (a pruned model is stored "
                           "dense with its masks: its compression is the non-zero count); latency measured in this "
                           "audit's run, so the ratios compare like with like.")]
    if predictions:
        names = [m["name"] for m in results.models]
        blocks.append(_figure(figures.interval_bars(
            "Accuracy on the audit images", names, {"accuracy": [predictions[n]["accuracy"] for n in names]},
            "accuracy", (0, 1))))
    hyper = [[m["name"], m.get("method") or "trained", ", ".join(f"{k}={v}" for k, v in (m.get("hyperparameters")
                                                                                         or {}).items()) or "-"]
             for m in results.models]
    blocks.append({"kind": "details", "summary": "Lineage hyper-parameters",
                   "blocks": [_table(["model", "method", "hyper-parameters"], hyper)]})
    return blocks


def agreement(results: Results) -> list[dict]:
    if "predictions" not in results.stages:
        return _missing("predictions")
    stage = results.stages["predictions"]
    rows = [[name, rate_ci(versus["top1_agreement"]), value_ci(versus["kl"]), value_ci(versus["js"]),
             value_ci(stage["models"][name]["ece"])] for name, versus in stage["versus_teacher"].items()]
    blocks = [_table(["model", "top-1 agreement", "KL(teacher || model)", "JS", "ECE"], rows,
                     f"Each model against the teacher ({stage['teacher']}) on the same images; 95% bootstrap "
                     "intervals over images.")]
    cams = results.stages.get("cams")
    if cams is None:
        return blocks + _missing("cams")
    for method, per_model in cams["methods"].items():
        rows = []
        for name, entry in per_model.items():
            if "error" in entry:
                rows.append([name, {"text": f"unavailable: {entry['error']}", "class": "note"}, "", ""])
                continue
            top_k = next((v for k, v in entry.items() if k.startswith("top")), None)
            rows.append([name, value_ci(entry["cosine"]), value_ci(entry["spearman"]), value_ci(top_k)])
        blocks.append(_table(["model", f"{method} cosine", f"{method} Spearman", f"{method} top-20% IoU"], rows,
                             f"Each model's {method} maps of the true class against the teacher's, image by image."))
    ojha = cams.get("ojha")
    if ojha and "error" not in ojha:
        blocks.append(_text(
            f"Ojha et al.'s test: the teacher's Grad-CAM is closer (cosine) to the distilled student's "
            f"({ojha['student']}) than to its independent control's ({ojha['control']}) on "
            f"{rate_ci(ojha['distilled_closer'])} of images. 50% is no effect; the interval says whether this audit "
            "can tell."))
    return blocks


def explanations(results: Results) -> list[dict]:
    blocks = []
    stage = results.stages.get("explanations")
    if stage is None:
        blocks += _missing("explanations")
    elif "skipped" in stage:
        blocks.append(_text(f"Localisation skipped: {stage['skipped']}."))
    else:
        methods = sorted({method for per_model in stage.values() for method in per_model})
        rows = [[name] + [rate_ci(per_model.get(m, {}).get("pointing_game")) + " / " +
                          value_ci(per_model.get(m, {}).get("relevance_mass"), 2) for m in methods]
                for name, per_model in stage.items()]
        blocks.append(_table(["model"] + [f"{m}: pointing game / relevance mass" for m in methods], rows,
                             "Localisation against the ground-truth object masks."))
    gallery = results.stages.get("gallery")
    if gallery is None:
        return blocks + _missing("gallery")
    blocks.append({"kind": "legend", "bar": images.data_uri(images.colour_bar()),
                   "text": f"|map| from 0 to the {images.PERCENTILE:g}th percentile of the row: one scale per image "
                           "and method, shared by every model in the row."})
    for position, (method, per_model) in enumerate(gallery["methods"].items()):
        blocks.append({"kind": "gallery", "title": f"{method}: each model's map of the true class",
                       "open": position == 0,
                       "columns": ["input", *per_model], "rows": _gallery_rows(gallery, per_model)})
    return blocks


def _gallery_rows(gallery: dict, per_model: dict) -> list[dict]:
    rows = []
    class_names = gallery["class_names"]
    for index, pixels in enumerate(gallery["images"]):
        image = np.asarray(pixels, dtype=np.uint8)
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        usable = {name: np.asarray(maps[index]) for name, maps in per_model.items() if isinstance(maps, list)}
        scale = images.shared_scale(list(usable.values())) if usable else 1.0
        label = gallery["labels"][index]
        cells = [{"src": images.data_uri(images.enlarge(image)), "caption": f"true: {class_names[label]}",
                  "alt": f"input, true class {class_names[label]}"}]
        for name, maps in per_model.items():
            if name not in usable:
                cells.append({"src": None, "caption": maps.get("error", "unavailable"), "alt": name})
                continue
            predicted = gallery["predictions"][name][index]
            mark = "✓" if predicted == label else f"✗ {class_names[predicted]}"
            cells.append({"src": images.data_uri(images.overlay(image, usable[name], scale)), "caption": mark,
                          "alt": f"{name}: {mark}"})
        rows.append({"cells": cells})
    return rows


def sanity(results: Results) -> list[dict]:
    stage = results.stages.get("sanity")
    if stage is None:
        return _missing("sanity")
    rows, by_method = [], {}
    for name, checks in stage.items():
        for check in checks:
            if "error" in check:
                rows.append([name, check["method"], "-", f"unavailable: {check['error']}", "-", "-", "-"])
                continue
            final = check["steps"][-1]["similarity"]["spearman_abs"] if check["steps"] else None
            verdict = _verdict(check["verdict"] == "pass")
            if check["verdict"] not in ("pass", "fail"):
                verdict = {"text": check["verdict"], "class": "fail"}
            rows.append([name, check["method"], check["kind"], value_ci(final), f"< {check['threshold']}",
                         verdict, check.get("reason", "")])
            by_method.setdefault(check["method"], {})[name] = check
    blocks = [_table(["model", "method", "randomisation", "Spearman |map| with every layer randomised",
                      "pass when", "verdict", "why"], rows,
                     "Adebayo et al.'s model-randomisation test: a saliency method that keeps its maps when the "
                     "weights are destroyed does not explain the model.")]
    for method, checks in by_method.items():
        series = {name: ([s["step"] for s in c["steps"]], [s["similarity"]["spearman_abs"] for s in c["steps"]])
                  for name, c in checks.items() if c["steps"]}
        threshold = next(iter(checks.values()))["threshold"]
        blocks.append(_figure(figures.interval_lines(
            f"Cascading randomisation: {method}", series, "layers randomised, from the top",
            "Spearman |map| vs original", threshold)))
    return blocks


def attacks(results: Results) -> list[dict]:
    stage = results.stages.get("attacks")
    if stage is None:
        return _missing("attacks")
    blocks = []
    for matrix in stage["matrices"]:
        names, params = matrix["models"], ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                    for k, v in matrix["params"].items())
        cells = {(c["source"], c["target"]): c for c in matrix["cells"]}
        values = [[cells[(s, t)]["conditional"][0] if (s, t) in cells else None for t in names] for s in names]
        blocks.append(_figure(figures.heatmap(
            f"Transfer of {matrix['attack']} ({params}): conditional rate", values, names, names, "target",
            "source", colour_scale="Reds")))
        rows = [[s, t, rate_ci(c["conditional"]), rate_ci(c["unconditional"]), rate_ci(c["fooling"])]
                for (s, t), c in cells.items() if s != t]
        white = [[name, percent(rate)] for name, rate in matrix["white_box_success"].items()]
        blocks.append(_table(["model", "white-box success"], white))
        blocks.append({"kind": "details", "summary": f"All transfer rates of {matrix['attack']} with intervals",
                       "blocks": [_table(["source", "target", "conditional", "unconditional", "fooling"], rows,
                                         "Conditional: fooled the target among examples that fooled the source "
                                         "and the target got right.")]})
    curves = stage.get("robust_curves")
    if curves:
        series = {name: ([p["eps"] * 255 for p in points], [[p["accuracy"], *p["ci95"]] for p in points])
                  for name, points in curves["models"].items()}
        blocks.append(_figure(figures.interval_lines(
            f"Robust accuracy under {curves['attack']} crafted on each model itself ({curves['images']} images)",
            series, "eps × 255", "accuracy")))
    return blocks


def cka(results: Results) -> list[dict]:
    stage = results.stages.get("cka")
    if stage is None:
        return _missing("cka")
    if not stage["grids"]:
        return [_text("No CKA grid: no model with float layers to tap besides the teacher.")]
    blocks = []
    for name, grid in stage["grids"].items():
        control = max(abs(v) for row in grid["control"] for v in row)
        blocks.append(_figure(figures.heatmap(
            f"Linear CKA ({'debiased' if grid['debiased'] else 'biased'}): {stage['teacher']} vs {name}",
            grid["values"], grid["rows"], grid["columns"], name, stage["teacher"])))
        blocks.append(_text(f"Control for {name}: the same grid with the image pairing shuffled reaches at most "
                            f"|CKA| = {control:.3f}."))
    return blocks


def probes(results: Results) -> list[dict]:
    stage = results.stages.get("probes")
    if stage is None:
        return _missing("probes")
    if "skipped" in stage:
        return [_text(f"Probes skipped: {stage['skipped']}.")]
    blocks, names = [], None
    rows = []
    for probe, entry in stage["probes"].items():
        names = names or list(entry["models"])
        paired = entry.get("paired")
        rows.append([probe, entry["description"]] + [rate_ci(entry["models"].get(n)) for n in names] +
                    [points_ci(paired["difference"]) if paired else "-"])
    control = stage.get("control")
    blocks.append(_table(["probe", "what it measures", *names, f"{stage.get('student') or 'student'} − "
                                                             f"{control or 'control'} (paired)"], rows,
                         f"On ProbeWorld variants of the {stage['images']} audit images; the independent student is "
                         "the control for what distillation transferred."))
    all_names = list(dict.fromkeys(n for e in stage["probes"].values() for n in e["models"]))
    blocks.append(_figure(figures.interval_bars(
        "Knowledge-transfer probes", list(stage["probes"]),
        {n: [e["models"].get(n) for e in stage["probes"].values()] for n in all_names}, "rate", (0, 1))))
    return blocks


def plan(results: Results) -> list[dict]:
    rows = [[key, str(value)] for key, value in results.plan.items()]
    data = [[key, str(value)] for key, value in results.data.items()]
    return [{"kind": "details", "summary": "Plan", "blocks": [_table(["setting", "value"], rows)]},
            {"kind": "details", "summary": "Data", "blocks": [_table(["field", "value"], data)]}]
