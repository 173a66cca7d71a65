"""int8 quantization: post-training static (calibrated), dynamic (Linear layers) and quantization-aware training.

Every int8 Subject runs the compiled int8 model and carries its differentiable fake-quant twin for gradient methods;
the lineage records how often the two agree, which layers were really quantized, and size and latency measured
against the float parent in the same run.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import fx, nn

from kdscope.compress import quant_backend as backend
from kdscope.compress.bf16 import Bf16Model, cpu_has_native_bf16
from kdscope.compress.compressed import Compressed, check_data
from kdscope.compress.lineage import Lineage, model_metrics
from kdscope.compress.logits import PREFIX, logits_only
from kdscope.compress.masks import fold_masks, masks_of
from kdscope.compress.outcome import normalisation
from kdscope.compress.reshape import layer_shapes
from kdscope.core.checkpoint import atomic_write, checkpoint_paths, save_checkpoint, write_metadata
from kdscope.core.profile import cpu_latency_ms, state_dict_bytes
from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet
from kdscope.train import TrainConfig
from kdscope.train import train as run_training

MODES = ("static", "dynamic", "qat", "bf16")


@dataclass(frozen=True)
class QuantizeConfig:
    """`mode`: 'static' (int8 weights and activations, calibrated), 'dynamic' (int8 Linear weights, activations
    quantized on the fly), 'qat' (fake-quant training, then int8), or 'bf16' (bfloat16 weights and activations, no
    calibration). `calibration` sets the activation ranges:
    'minmax' (no saturation), 'histogram' (PyTorch's x86 default: the range minimising quantization error) or
    'percentile' (99.99th percentile clipping)."""

    mode: str = field(default="static", metadata={"choices": MODES})
    calibration: str = field(default="histogram", metadata={"choices": backend.CALIBRATIONS})
    calibration_images: int = 512

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.calibration not in backend.CALIBRATIONS:
            raise ValueError(f"calibration must be one of {backend.CALIBRATIONS}, got {self.calibration!r}")
        if self.calibration_images < 1:
            raise ValueError(f"calibration_images must be >= 1, got {self.calibration_images}")


def quantize(
    parent: Subject,
    data: ImageSet,
    config: QuantizeConfig = QuantizeConfig(),
    *,
    train: TrainConfig | None = None,
    eval_data: ImageSet | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
) -> Compressed:
    """An int8 (or bf16) copy of `parent` (never modified). `data` calibrates (its first `calibration_images` images)
    or, for QAT, trains (`train`, 2 epochs at a small learning rate by default). An int8 result carries the reference
    graph it was compiled from (`.reference`, what a saved archive holds and `load_int8` reads back)."""
    check_data(data, "quantize", required=True)
    config.validate()
    if train is not None and config.mode != "qat":
        raise ValueError(f"train= is the QAT schedule; mode {config.mode!r} does not train (use mode='qat')")
    name = name or f"{parent.name}_{'bf16' if config.mode == 'bf16' else 'int8'}"
    model = (fold_masks(parent.model) if masks_of(parent.model) else copy.deepcopy(parent.model)).eval()
    calibration = data.subset(range(min(len(data), config.calibration_images)))
    if config.mode == "bf16":
        return _to_bf16(parent, model, config, eval_data or calibration, calibration, out, name)
    model = logits_only(model, parent)  # the int8 graph returns the logits, whatever the network returns
    example = parent.normalize(calibration.images(slice(0, 2)).to(parent.device))
    if config.mode == "qat":
        train = train or TrainConfig(epochs=2, lr=0.005, warmup_epochs=0)
        prepared = backend.prepare(model, example, qat=True)
        mean, std = normalisation(parent)
        run_training(prepared, data, train, mean=mean, std=std, progress=progress, name=name, role="quantized")
    else:
        prepared = backend.prepare(model, example, calibration=config.calibration,
                                   dynamic=config.mode == "dynamic", linear_only=config.mode == "dynamic")
        backend.calibrate(prepared, (parent.normalize(x.to(parent.device)) for x, _ in calibration.batches(128)))
    reference = backend.convert(prepared)
    quantized, floating = ([name.removeprefix(PREFIX) for name in names]
                           for names in backend.quantized_layers(reference))
    if not quantized:
        raise ValueError(f"no layer of {parent.name} was quantized; int8 needs Conv2d or Linear layers")
    # From here on, the graph a saved archive loads as: this int8 model and one loaded from `out` are the same.
    reference = backend.round_trip(reference, example)
    int8 = int8_subject(reference, name=name, parent=parent,
                        metadata={"compression": {"int8": {**asdict(config), "quantized_layers": quantized,
                                                           "float_layers": floating}}})
    lineage = Lineage(name=name, parent=parent.name, method=f"quantize:int8_{config.mode}",
                      hyperparameters={"quantize": asdict(config),
                                       "qat_train": asdict(train) if train is not None else None},
                      data=(data if train is not None else calibration).description,
                      seed=train.seed if train is not None else 0,
                      metrics=int8_metrics(int8, parent, reference, eval_data or calibration))
    result = Compressed(int8, lineage, checkpoint=Path(out) / f"{name}.pt2" if out is not None else None,
                        reference=reference)
    if result.checkpoint is not None:
        save_int8(result.checkpoint, int8, reference, example)
    return result


def int8_subject(reference: fx.GraphModule, *, name: str, parent: Subject | None = None,
                 metadata: dict | None = None, **subject_kwargs: object) -> Subject:
    """Wrap a reference int8 graph: the compiled int8 model runs it, its fake-quant twin gives gradients."""
    lowered = backend.lower(reference)
    if parent is not None:
        mean, std = normalisation(parent)
        subject_kwargs = {"mean": mean, "std": std, "class_names": parent.class_names, **subject_kwargs}
    return Subject(lowered, name=name, role="quantized", twin=backend.fake_quant_twin(reference),
                   metadata=metadata, **subject_kwargs)


def int8_metrics(int8: Subject, parent: Subject, reference: fx.GraphModule, data: ImageSet) -> dict:
    """Accuracy, twin/int8 top-1 agreement, and weight bytes and CPU latency as ratios to the parent, same run."""
    metrics = model_metrics(int8, data)
    weights = [t for t in reference.state_dict().values() if t.dtype in (torch.int8, torch.float32) and t.ndim >= 1]
    metrics["parameters"] = sum(parent_p.numel() for parent_p in parent.model.parameters())
    metrics["nonzero_parameters"] = sum(int(torch.count_nonzero(t)) for t in weights)
    metrics["file_bytes"] = state_dict_bytes(reference)
    images = data.images()
    with torch.no_grad():
        twin_top1 = torch.cat([int8.logits(images[i:i + 256], use_twin=True).argmax(1).cpu()
                               for i in range(0, len(images), 256)])
    metrics["twin_int8_top1_agreement"] = float((int8.predict(images) == twin_top1).float().mean())
    return {**metrics, **_against_parent(int8, parent, data, metrics)}


def _against_parent(compressed: Subject, parent: Subject, data: ImageSet, metrics: dict) -> dict:
    """Top-1 agreement with the float parent, and latency and weight bytes as ratios to it, measured now."""
    images = data.images()
    agreement = float((compressed.predict(images) == parent.predict(images)).float().mean())
    metrics = {"parent_top1_agreement": agreement, "cpu_latency_ms": metrics["cpu_latency_ms"],
               "file_bytes": metrics["file_bytes"]}
    parent_latency = cpu_latency_ms(parent, data.image_shape)
    metrics["parent_cpu_latency_ms"] = parent_latency
    metrics["latency_ratio_to_parent"] = (metrics["cpu_latency_ms"] / parent_latency
                                          if parent_latency and metrics["cpu_latency_ms"] else None)
    metrics["parent_file_bytes"] = state_dict_bytes(parent.model)
    metrics["size_ratio_to_parent"] = metrics["file_bytes"] / metrics["parent_file_bytes"]
    return metrics


def _to_bf16(parent: Subject, model: nn.Module, config: QuantizeConfig, eval_data: ImageSet,
             calibration: ImageSet, out: str | Path | None, name: str) -> Compressed:
    wrapped = Bf16Model(model)
    mean, std = normalisation(parent)
    compression = {"bf16": {"native_bf16_cpu": cpu_has_native_bf16()}, "shapes": layer_shapes(model)}
    subject = Subject(wrapped, name=name, role="quantized", mean=mean, std=std, class_names=parent.class_names,
                      metadata={"compression": compression}, output=parent.output)
    metrics = model_metrics(subject, eval_data)
    metrics.update(_against_parent(subject, parent, eval_data, metrics))
    lineage = Lineage(name=name, parent=parent.name, method="quantize:bf16",
                      hyperparameters={"quantize": asdict(config)}, data=calibration.description, seed=0,
                      metrics=metrics)
    result = Compressed(subject, lineage, checkpoint=Path(out) / f"{name}.pt" if out is not None else None)
    if result.checkpoint is not None:
        save_checkpoint(result.checkpoint, subject, extra={"metrics": metrics})
    return result


def save_int8(path: str | Path, subject: Subject, reference: fx.GraphModule, example: torch.Tensor) -> Path:
    """NAME.pt2 (the reference int8 graph as a torch.export archive) beside NAME.json."""
    archive = checkpoint_paths(path)[0].with_suffix(".pt2")
    atomic_write(archive, lambda f: backend.save(reference, example, f))
    shell = Subject(nn.Identity(), name=subject.name, role=subject.role, mean=_listed(subject.mean),
                    std=_listed(subject.std), input_range=subject.input_range, class_names=subject.class_names,
                    metadata=subject.metadata)
    write_metadata(archive, shell)
    return archive


def load_int8(path: str | Path, *, trust: bool = False) -> tuple[nn.Module, nn.Module]:
    """(compiled int8 model, fake-quant twin) from NAME.pt2, loaded without running code from it unless trusted."""
    archive = checkpoint_paths(path)[0].with_suffix(".pt2")
    reference = backend.load(archive, trust=trust)
    return backend.lower(reference), backend.fake_quant_twin(reference)


def _listed(values: torch.Tensor | None) -> list[float] | None:
    return None if values is None else values.flatten().tolist()
