"""The audit at real size (issue 15): peak memory against the number of images, today's streaming audit against
the previous one (the commit before streaming, run from a git worktree), a ResNet-18-sized teacher at 224x224,
one process against two (gloo), and, where there is a GPU, images/s on it.

Every audit runs in its own process so that peak resident memory (ru_maxrss, the whole process: Python, torch,
models, data) belongs to that audit alone; a watchdog stops a run that passes --memory-limit GB and reports how far
it got. Models are built from seeds, untrained (memory and speed do not depend on what the weights learned): a zoo
ResNet teacher, a distilled-architecture student, its independent control, a 50%-pruned teacher and an int8 teacher.
The plan has every stage, with Grad-CAM as the explainer, FGSM for the transfer matrix and one robust eps, so that
10,000 images fit in a bench's time on two cores.

    python bench/bench_scale.py memory            # N = 1,000 and 10,000 at 64x64, now and before
    python bench/bench_scale.py memory --codes streaming   # the same, this release only (every stage)
    python bench/bench_scale.py resnet18          # ResNet-18-sized teacher at 224x224, N = 1,000
    python bench/bench_scale.py world             # world size 1 vs 2 (gloo), identical results.json
    python bench/bench_scale.py gpu               # audit images/s on one GPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PREVIOUS = "2aa2507"  # the last commit before the audit streamed
STAGE_LINE = re.compile(r"audit: (?P<stages>[a-z+]+): (?P<images>\d+) images in (?P<seconds>[\d.]+) s "
                        r"\((?P<rate>[\d.]+) images/s\)")


def models(size: str, device: str = "cpu") -> list:
    """Subjects: teacher, KD student, independent control, pruned and int8 teachers (the int8 one on the CPU)."""
    import torch

    from kdscope import Subject, zoo
    from kdscope.compress import PruneConfig, QuantizeConfig, prune, quantize
    from kdscope.data import probeworld

    torch.manual_seed(0)
    if size == "resnet18":
        teacher_model = resnet18_model()
        student_model = zoo.build("student", 10, seed=1, width=16)
        pixels = 224
    else:
        teacher_model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
        student_model = zoo.build("student", 10, seed=1, width=2)
        pixels = 64
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    teacher = Subject(teacher_model.to(device).eval(), name="teacher", role="teacher", mean=mean, std=std)
    subjects = [teacher, Subject(student_model.to(device).eval(), name="kd", role="student", mean=mean, std=std)]
    if size == "resnet18":
        return subjects
    control = zoo.build("student", 10, seed=2, width=2).to(device).eval()
    subjects.append(Subject(control, name="alone", role="independent_student", mean=mean, std=std))
    subjects.append(prune(teacher, config=PruneConfig(sparsity=0.5), name="pruned", progress=False).subject)
    cpu_teacher = Subject(zoo.build("resnet", 10, seed=0, width=4, blocks=1).eval(), name="teacher", mean=mean,
                          std=std)
    calibration = probeworld(64, split="train", size=pixels, cache_dir=False)
    subjects.append(quantize(cpu_teacher, calibration, QuantizeConfig(calibration_images=64), name="int8",
                             progress=False).subject)
    return subjects


def resnet18_model() -> object:
    """ResNet-18 (11.2M parameters at 10 classes) from HuggingFace's config, randomly initialised: torchvision does
    not load with this torch, and the zoo's ResNets keep full resolution in their first stage."""
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(num_labels=10, layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                          embedding_size=64)
    return ResNetForImageClassification(config)


def worker(args: argparse.Namespace) -> None:
    """One audit in this process (or this torchrun rank); rank 0 prints one JSON line with its peak memory and
    time."""
    import torch

    torch.set_num_threads(args.threads)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from kdscope.audit.distributed import torchrun_group

        with torchrun_group(args.device) as device:
            _audit(args, device, first=int(os.environ["RANK"]) == 0)
    else:
        _audit(args, args.device, first=True)


def _audit(args: argparse.Namespace, device: str, first: bool) -> None:
    from kdscope.audit import Plan, audit
    from kdscope.data import load_dataset

    subjects = models(args.size, device)
    pixels = 224 if args.size == "resnet18" else 64
    try:
        data = load_dataset("probeworld", split="test", n=args.images, size=pixels, lazy=True)
    except TypeError:  # the code before streaming has no lazy sets
        data = load_dataset("probeworld", split="test", n=args.images, size=pixels)
    stages = tuple(args.stages.split(",")) if args.stages else Plan().stages
    plan = Plan(images=args.images, stages=stages, explainers=("gradcam",), sanity_methods=("gradient",),
                attacks=({"attack": "fgsm", "eps": 4 / 255},), robust_eps=(4 / 255,), robust_images=64)
    started = time.perf_counter()
    results = audit(subjects, data, plan, progress=first)
    if not first:
        return
    if args.json:
        Path(args.json).write_text(results.to_json())
    print(json.dumps({"seconds": time.perf_counter() - started,
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}), flush=True)


def run(images: int, size: str, *, python_path: Path, limit_gb: float, threads: int = 2, device: str = "cpu",
        json_out: Path | None = None, launcher: tuple[str, ...] = (), stages: str = "") -> dict:
    """Run one audit in a child process (under `launcher`, python's arguments before the script: torchrun's),
    watching its resident memory; its measurements and per-stage rates."""
    command = [sys.executable, *launcher, str(Path(__file__).resolve()), "worker", "--images", str(images), "--size",
               size, "--threads", str(threads), "--device", device, "--stages", stages]
    if json_out is not None:
        command += ["--json", str(json_out)]
    inherited = [part for part in os.environ.get("PYTHONPATH", "").split(os.pathsep) if part and "kdscope" not in part
                 and not part.endswith("/src")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(python_path), *inherited]),
                   "KDSCOPE_NO_CACHE": "1"}
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    peak = {"gb": 0.0, "killed": False}
    threading.Thread(target=_watch, args=(child, limit_gb, peak), daemon=True).start()
    out, err = child.communicate()
    stages = [m.groupdict() for m in STAGE_LINE.finditer(err)]
    measured = json.loads(out.strip().splitlines()[-1]) if child.returncode == 0 else {}
    return {"images": images, "ok": child.returncode == 0, "killed_over_limit": peak["killed"],
            "peak_rss_gb": measured.get("peak_rss_gb", peak["gb"]), "seconds": time.perf_counter() - started,
            "stages": stages, "last_output": err.strip().splitlines()[-3:] if child.returncode else []}


def _watch(child: subprocess.Popen, limit_gb: float, peak: dict) -> None:
    """Poll the child's resident memory; stop it past the limit (then its peak is what was seen)."""
    status = Path(f"/proc/{child.pid}/status")
    while child.poll() is None:
        try:
            rss = int(re.search(r"VmRSS:\s+(\d+)", status.read_text())[1]) / 2**20
        except (OSError, TypeError):
            break
        peak["gb"] = max(peak["gb"], rss)
        if rss > limit_gb:
            peak["killed"] = True
            child.kill()
        time.sleep(0.2)


def previous_code() -> Path:
    """A worktree of the commit before streaming, for the before/after comparison."""
    tree = Path("/tmp/kdscope-before-streaming")
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), PREVIOUS], check=True,
                       capture_output=True)
    return tree / "src"


def memory(limit_gb: float, stages: str, codes: tuple[str, ...]) -> list[str]:
    paths = {"streaming": lambda: ROOT / "src", "before": previous_code}
    rows = {(code, n): run(n, "small", python_path=paths[code](), limit_gb=limit_gb, stages=stages)
            for code in codes for n in (1000, 10000)}
    lines = ["| code | N = 1,000 | N = 10,000 | ratio | time 1,000 | time 10,000 |", "|---|---|---|---|---|---|"]
    for code in codes:
        small, large = rows[(code, 1000)], rows[(code, 10000)]
        why = "over the limit" if large["killed_over_limit"] else "failed"
        large_text = (f"{large['peak_rss_gb']:.2f} GB" if large["ok"] else
                      f"stopped at {large['peak_rss_gb']:.1f} GB ({why}, after {_last_stage(large)})")
        ratio = f"{large['peak_rss_gb'] / small['peak_rss_gb']:.2f}" if large["ok"] else "-"
        lines.append(f"| {code} | {small['peak_rss_gb']:.2f} GB | {large_text} | {ratio} | {small['seconds']:.0f} s | "
                     f"{large['seconds']:.0f} s |")
    lines += ["", f"Stages: {stages or 'all'}. Per pass, streaming, N = 10,000:", ""]
    return lines + _stage_lines(rows[("streaming", 10000)])


def _last_stage(row: dict) -> str:
    return "passes " + ", ".join(s["stages"] for s in row["stages"]) if row["stages"] else "no pass"


def _stage_lines(row: dict) -> list[str]:
    return ["| pass | images | seconds | images/s |", "|---|---|---|---|"] + [
        f"| {s['stages']} | {s['images']} | {float(s['seconds']):.0f} | {float(s['rate']):.1f} |"
        for s in row["stages"]]


def resnet18(limit_gb: float, device: str = "cpu") -> list[str]:
    row = run(1000, "resnet18", python_path=ROOT / "src", limit_gb=limit_gb, device=device)
    return [f"ResNet-18 teacher (HuggingFace config, 11.2M parameters) and a zoo student at 224x224, N = 1,000, "
            f"{device}: {'completed' if row['ok'] else 'did not complete'}, peak {row['peak_rss_gb']:.2f} GB, "
            f"{row['seconds']:.0f} s in all.", ""] + _stage_lines(row) + [
        f"| the rest: sanity, latencies, set-up | - | "
        f"{row['seconds'] - sum(float(s['seconds']) for s in row['stages']):.0f} | - |"]


def world(limit_gb: float, images: int = 300) -> list[str]:
    """The same audit in one process and in two (torchrun, gloo), one thread each: results.json compared."""
    out = Path("/tmp/kdscope-world")
    out.mkdir(exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    one = run(images, "small", python_path=ROOT / "src", limit_gb=limit_gb, threads=1, json_out=out / "one.json")
    two = run(images, "small", python_path=ROOT / "src", limit_gb=limit_gb, threads=1, json_out=out / "two.json",
              launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    if not (one["ok"] and two["ok"]):
        raise SystemExit(f"an audit failed: {one['last_output'] or two['last_output']}")
    same = _without_timings(out / "one.json") == _without_timings(out / "two.json")
    passes = {s["stages"]: float(s["seconds"]) for s in two["stages"]}
    return ["| processes | seconds in all | " + " | ".join(f"{s['stages']} (s)" for s in one["stages"]) +
            " | results.json (less latencies) |", "|---|---|" + "---|" * len(one["stages"]) + "---|",
            f"| 1 | {one['seconds']:.0f} | " + " | ".join(f"{float(s['seconds']):.0f}" for s in one["stages"]) +
            " | - |",
            f"| 2 (gloo) | {two['seconds']:.0f} | " + " | ".join(f"{passes.get(s['stages'], float('nan')):.0f}"
                                                              for s in one["stages"]) +
            f" | {'identical' if same else 'DIFFERENT'} |"]


def _without_timings(path: Path) -> str:
    """results.json less what is a wall-clock measurement (the models' latencies and the ratios of latencies,
    in the audit's profile and in the lineage each process measured when it built the model), as canonical JSON
    (NaN, an undefined rate, compares equal to itself there)."""
    plain = json.loads(path.read_text())
    for model in plain["models"]:
        for part in ("profile", "metrics"):
            for key in [k for k in (model.get(part) or {}) if "latency" in k]:
                del model[part][key]
    return json.dumps(plain, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("memory", "resnet18", "world", "gpu", "worker"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    parser.add_argument("--memory-limit", type=float, default=16.0, help="GB of resident memory before a run stops")
    parser.add_argument("--stages", default="", help="comma-separated audit stages (default: all)")
    parser.add_argument("--codes", default="streaming,before",
                        help="memory: which code to run, this release ('streaming') and/or the one before it")
    args = parser.parse_args()
    if not set(args.codes.split(",")) <= {"streaming", "before"} or "streaming" not in args.codes.split(","):
        parser.error("--codes takes 'streaming' or 'streaming,before'")
    if args.what == "worker":
        worker(args)
        return
    from timing import cpu_model

    lines = {"memory": lambda: memory(args.memory_limit, args.stages, tuple(args.codes.split(","))),
             "resnet18": lambda: resnet18(args.memory_limit), "world": lambda: world(args.memory_limit),
             "gpu": lambda: resnet18(args.memory_limit, device="cuda")}[args.what]()
    text = "\n".join([f"CPU: {cpu_model()}", "", *lines])
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_all_stages" if args.what == "memory" and not args.stages else ""
    (RESULTS / f"scale_{args.what}{suffix}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
