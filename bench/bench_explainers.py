"""Explainers against captum and against the physical floor, the Adebayo et al. reproduction, and Grad-CAM's
pointing game, on the demo teacher.

    python bench/bench_explainers.py --only timing     # 64 images, methods timed in turn with their captum peers
    python bench/bench_explainers.py --only sanity     # cascading + data randomisation per method (trains a
                                                       # random-label model, about 1.5 min)
    python bench/bench_explainers.py --only pointing   # Grad-CAM pointing game and relevance mass, 1,000 images
Each part writes bench/results/explainers_PART.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, LayerGradCam, Occlusion, Saliency

from common import demo_setting, grad_cam_modules
from kdscope import Subject, zoo
from kdscope.core.checkpoint import library_versions
from kdscope.core.subject import RawInputModel
from kdscope.data import probeworld
from kdscope.explainers import explain
from kdscope.explainers.sanity import PASS_THRESHOLD, cascading_randomization, data_randomization, localisation
from kdscope.train import train

RESULTS = Path(__file__).parent / "results"
SANITY_METHODS = ("gradient", "guided_backprop", "gradcam", "guided_gradcam")


def grad_cam_guided_backprop() -> type:
    """`GuidedBackpropReLUModel` from pytorch-grad-cam (see `grad_cam_modules`)."""
    (module,) = grad_cam_modules("pytorch_grad_cam.guided_backprop")
    return module.GuidedBackpropReLUModel


def timing(repeats: int = 9) -> dict:
    _, teacher, _, test_data = demo_setting()
    x, y = test_data.images(slice(0, 64)), test_data.targets(slice(0, 64))
    peer_model = RawInputModel(teacher).eval()
    layer = teacher.model.layer3

    def floor() -> None:
        """One raw forward + backward to the input: the least any gradient method can cost."""
        xg = x.clone().requires_grad_(True)
        teacher.model(teacher.normalize(xg)).gather(1, y.view(-1, 1)).sum().backward()

    def captum_gradcam() -> torch.Tensor:
        cam = LayerGradCam(peer_model, layer).attribute(x, target=y, relu_attributions=True)
        return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)

    cases = {
        "saliency": (lambda: explain(teacher, x, y, method="saliency").maps,
                     lambda: Saliency(peer_model).attribute(x, target=y, abs=True)),
        "guided_backprop": (lambda: explain(teacher, x, y, method="guided_backprop").maps,
                            lambda: GuidedBackprop(peer_model).attribute(x, target=y)),
        "gradcam": (lambda: explain(teacher, x, y, method="gradcam", layer="layer3").maps, captum_gradcam),
        "occlusion (8x8, stride 4)": (
            lambda: explain(teacher, x, y, method="occlusion", patch=8, stride=4).maps,
            lambda: Occlusion(peer_model).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4),
                                                    baselines=0.5, target=y)),
        "occlusion, one image": (
            lambda: explain(teacher, x[:1], y[:1], method="occlusion", patch=8, stride=4).maps,
            lambda: Occlusion(peer_model).attribute(x[:1], sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4),
                                                    baselines=0.5, target=y[:1])),
    }
    peer_guided = grad_cam_guided_backprop()(copy.deepcopy(peer_model))

    def grad_cam_one_by_one() -> torch.Tensor:
        maps = [peer_guided(x[i:i + 1].clone(), int(y[i])) for i in range(len(x))]
        return torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2)

    cases["guided_backprop vs grad-cam (one image per call)"] = (
        lambda: explain(teacher, x, y, method="guided_backprop").maps, grad_cam_one_by_one)
    rows = []
    for name, (ours, theirs) in cases.items():
        repeat = 3 if name.startswith("occlusion (") or "grad-cam" in name else repeats
        ours_maps, their_maps = ours(), theirs()
        same = float((ours_maps.expand_as(their_maps) - their_maps.detach()).abs().max())
        times = {"ours": [], "captum": [], "floor": []}
        for _ in range(repeat):
            for label, call in (("ours", ours), ("captum", theirs), ("floor", floor)):
                start = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - start)
        rows.append({"method": name, "ours_s": statistics.median(times["ours"]),
                     "peer_s": statistics.median(times["captum"]), "floor_s": statistics.median(times["floor"]),
                     "ratio_vs_peer": statistics.median(a / b for a, b in zip(times["ours"], times["captum"])),
                     "ratio_vs_floor": statistics.median(a / b for a, b in zip(times["ours"], times["floor"])),
                     "max_abs_difference": same})
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "images": len(x), "versions": library_versions()}


def sanity(n: int = 64) -> dict:
    recipe, teacher, _, test_data = demo_setting()
    spec = next(m for m in recipe.models if m.role == "teacher")
    random_labels = probeworld(recipe.train_images, split="train", seed=recipe.seed, variant="random_labels")
    model = zoo.build(spec.arch, 10, seed=spec.config.seed, **spec.arch_kwargs)
    mean, std = random_labels.channel_stats()
    train(model, random_labels, spec.config, mean=mean, std=std, progress=False)
    control = Subject(model, name="random_labels", mean=teacher.mean.flatten().tolist(),
                      std=teacher.std.flatten().tolist())
    x, y = test_data.images(slice(0, n)), test_data.targets(slice(0, n))
    results = []
    for method in SANITY_METHODS:
        results.append(cascading_randomization(teacher, x, y, method=method).to_dict())
        results.append(data_randomization(teacher, control, x, y, method=method).to_dict())
        print(json.dumps({k: results[-2][k] for k in ("method", "verdict")}), flush=True)
    return {"results": results, "images": n, "threshold": PASS_THRESHOLD,
            "random_label_train_accuracy": control.evaluate(random_labels)["accuracy"], "versions": library_versions()}


def pointing(n: int = 1000) -> dict:
    _, teacher, _, test_data = demo_setting()
    x, y = test_data.images(slice(0, n)), test_data.targets(slice(0, n))
    masks = torch.from_numpy(test_data.masks[:n])
    rows = {}
    for method in ("gradcam", "gradient", "guided_backprop", "occlusion"):
        scores = localisation(teacher, x, y, masks, method=method)
        rows[method] = {k: list(v) for k, v in scores.items()}
        print(method, json.dumps(rows[method]), flush=True)
    mask_share = float(masks.float().mean())
    return {"methods": rows, "images": n, "mask_area_share": mask_share, "versions": library_versions()}


def show(part: str, result: dict) -> None:
    if part == "timing":
        print("\n| method, 64 images | ours | peer (captum unless named) | ours / peer | ours / forward+backward | "
              "max abs difference |")
        print("|---|---|---|---|---|---|")
        for r in result["rows"]:
            print(f"| {r['method']} | {1000 * r['ours_s']:.0f} ms | {1000 * r['peer_s']:.0f} ms | "
                  f"{r['ratio_vs_peer']:.2f} | {r['ratio_vs_floor']:.2f} | {r['max_abs_difference']:.1e} |")
    elif part == "sanity":
        print(f"\nSpearman |map| similarity to the trained model's maps, mean [95% CI] over {result['images']} images "
              f"(pass: below {result['threshold']} with every layer randomised)")
        print("\n| method | top layer (fc) | top 4 | top 8 | all layers | verdict | random-label model |")
        print("|---|---|---|---|---|---|---|")
        for cascade, data in zip(result["results"][::2], result["results"][1::2]):
            steps = cascade["steps"]
            picks = [steps[0], steps[min(3, len(steps) - 1)], steps[min(7, len(steps) - 1)], steps[-1]]
            cells = [_ci(s["similarity"]["spearman_abs"]) for s in picks]
            print(f"| {cascade['method']} | " + " | ".join(cells) + f" | {cascade['verdict']} | "
                  f"{_ci(data['steps'][0]['similarity']['spearman_abs'])} ({data['verdict']}) |")
    else:
        print(f"\n| method | pointing game [95% CI] | relevance mass in mask [95% CI] |  (masks cover "
              f"{result['mask_area_share']:.0%} of the image on average)")
        print("|---|---|---|")
        for method, scores in result["methods"].items():
            print(f"| {method} | {_ci(scores['pointing_game'], percent=True)} | "
                  f"{_ci(scores['relevance_mass'], percent=True)} |")


def _ci(values: list[float], percent: bool = False) -> str:
    if percent:
        return f"{values[0]:.1%} [{values[1]:.1%}, {values[2]:.1%}]"
    return f"{values[0]:+.2f} [{values[1]:+.2f}, {values[2]:+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("timing", "sanity", "pointing"), required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = {"timing": timing, "sanity": sanity, "pointing": pointing}[args.only]()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"explainers_{args.only}.json").write_text(json.dumps(result, indent=2))
    show(args.only, result)


if __name__ == "__main__":
    main()
