"""int8 against its float parent on ProbeWorld, all measured in the same run on this CPU: accuracy (paired interval),
weight bytes, latency (int8 vs eager fp32 and vs torch.compile'd fp32), twin/int8 agreement, per calibration.

    python bench/bench_quantize.py      # demo teacher and student; writes bench/results/quantize.json
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kdscope import Subject
from kdscope.compress.bf16 import Bf16Model
from kdscope.compress.quant_backend import CompiledInt8, warm_up
from kdscope.compress.quantize import QuantizeConfig, quantize
from kdscope.core.checkpoint import library_versions
from kdscope.core.stats import bootstrap_ci
from kdscope.data import probeworld
from kdscope.demo import DemoRecipe, train_models
from kdscope.store.loading import load_subject
from timing import interleaved_ms

RESULTS = Path(__file__).parent / "results" / "quantize.json"
CONFIGS = (QuantizeConfig("static", "minmax"), QuantizeConfig("static", "histogram"),
           QuantizeConfig("static", "percentile"), QuantizeConfig("dynamic", "minmax"), QuantizeConfig("bf16"))


def compiled_float(subject: Subject, shape: tuple[int, ...]) -> Subject:
    """The fairer float baseline: the same Inductor compiler on the fp32 model."""
    compiled = torch.compile(subject.model.eval())
    warm_up(compiled, torch.zeros(2, *shape))
    return Subject(compiled, name="fp32_compiled", mean=subject.mean.flatten().tolist(),
                   std=subject.std.flatten().tolist())


def _layers(subject: Subject) -> dict:
    int8 = subject.metadata["compression"].get("int8")
    if int8 is None:
        return {"quantized_layers": "all (bf16)", "float_layers": []}
    return {"quantized_layers": len(int8["quantized_layers"]), "float_layers": int8["float_layers"]}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def main() -> None:
    torch.set_num_threads(2)
    recipe = DemoRecipe()
    train_models("runs/demo", progress=False, recipe=recipe)
    train_data = probeworld(recipe.train_images, split="train", seed=recipe.seed)
    test_data = probeworld(recipe.test_images, split="test", seed=recipe.seed)
    targets = test_data.targets().numpy()
    rows = []
    for model_name in ("teacher", "kd_student_independent"):
        parent = load_subject(f"runs/demo/{model_name}.pt")
        parent_correct = (parent.predict(test_data.images()).numpy() == targets).astype(float)
        shape = test_data.image_shape
        peer = compiled_float(parent, shape)
        for config in CONFIGS:
            result = quantize(parent, train_data, config, eval_data=test_data, progress=False)
            int8 = result.subject
            assert isinstance(int8.model, CompiledInt8 if config.mode != "bf16" else Bf16Model)
            int8_correct = (int8.predict(test_data.images()).numpy() == targets).astype(float)
            latency = {}
            for batch in (64, 1):
                latency[batch] = interleaved_ms({"fp32_eager": parent, "fp32_compiled": peer, "int8": int8}, shape,
                                                batch)
                latency[batch]["int8_vs_eager"] = latency[batch]["ratios"]["int8"]["fp32_eager"]
                latency[batch]["int8_vs_compiled"] = latency[batch]["ratios"]["int8"]["fp32_compiled"]
            metrics = result.lineage.metrics
            drop = bootstrap_ci(parent_correct - int8_correct)
            rows.append({
                "model": model_name, "mode": config.mode, "calibration": config.calibration,
                "float_accuracy": float(parent_correct.mean()), "int8_accuracy": float(int8_correct.mean()),
                "drop_points": [100 * d for d in drop],
                "size_ratio": metrics["size_ratio_to_parent"], "file_bytes": metrics["file_bytes"],
                "parent_file_bytes": metrics["parent_file_bytes"],
                "latency_ms": latency,
                "twin_agreement": metrics.get("twin_int8_top1_agreement"),
                "float_agreement": metrics["parent_top1_agreement"],
                **_layers(int8),
            })
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "versions": library_versions(),
                                   "threads": torch.get_num_threads()}, indent=2))
    print("\n| model | mode / calibration | fp32 acc | int8 acc | drop, points [95% CI] | size | "
          "latency int8/fp32 eager (b64, b1) | int8/fp32 compiled (b64, b1) | twin = int8 | layers int8 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = r["latency_ms"]
        eager = [ms[b]["int8_vs_eager"] for b in (64, 1)]
        compiled = [ms[b]["int8_vs_compiled"] for b in (64, 1)]
        d = r["drop_points"]
        print(f"| {r['model']} | {r['mode']} / {r['calibration']} | {r['float_accuracy']:.1%} | "
              f"{r['int8_accuracy']:.1%} | {d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}] | {r['size_ratio']:.2f}x | "
              f"{eager[0]:.2f}, {eager[1]:.2f} | {compiled[0]:.2f}, {compiled[1]:.2f} | "
              f"{_percent(r['twin_agreement'])} | {r['quantized_layers']} ({len(r['float_layers'])} float) |")
    print("\nfp32 latency (ms, batch 64 / 1): " + "; ".join(
        f"{r['model']}: eager {r['latency_ms'][64]['fp32_eager']:.1f} / {r['latency_ms'][1]['fp32_eager']:.2f}, "
        f"int8 {r['latency_ms'][64]['int8']:.1f} / {r['latency_ms'][1]['int8']:.2f}"
        for r in rows if (r["mode"], r["calibration"]) == ("static", "histogram")))


if __name__ == "__main__":
    main()
