"""`kdscope compress distill|prune|quantize`: make the compressed models, each with its lineage JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import torch

from kdscope import zoo
from kdscope.cli.common import ModelSource, image_size_option, load_data, model_source_options
from kdscope.compress import (
    METHODS,
    Compressed,
    DistillConfig,
    LotteryConfig,
    PruneConfig,
    QuantizeConfig,
    StructuredConfig,
    distill,
    lottery_ticket,
    prune,
    quantize,
    structured_prune,
)
from kdscope.core.checkpoint import FACTORY_ATTRIBUTE
from kdscope.core.subject import Subject
from kdscope.data import ImageSet
from kdscope.data.augment import Augment
from kdscope.store.loading import build_from_factory
from kdscope.train import TrainConfig


@click.group()
def compress() -> None:
    """Build compressed models from a teacher (each with its lineage JSON)."""


def config_option(method: str, parameter: str, *decls: str, **options: object) -> Callable:
    """A click option for one field of a method's config, its default and choices taken from the registry."""
    spec = METHODS[method].parameters()[parameter]
    generated = {"default": spec.default, "show_default": True}
    if spec.choices:
        generated["type"] = click.Choice(spec.choices)
    return click.option(*(decls or (f"--{parameter.replace('_', '-')}",)), **{**generated, **options})


@compress.command("distill")
@click.option("--teacher", "teacher_ref", required=True, help="Teacher: any model reference `evaluate` takes.")
@click.option("--student-arch", type=click.Choice(sorted(zoo.ARCHITECTURES)), default="student", show_default=True)
@click.option("--width", type=click.IntRange(1), default=None, help="Student base width (architecture default).")
@click.option("--blocks", type=click.IntRange(1), default=None, help="Student blocks per stage.")
@click.option("--data", "data_spec", default="probeworld", show_default=True)
@click.option("--n-train", type=click.IntRange(1), default=None, help="Cap on training images.")
@image_size_option
@click.option("--epochs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@config_option("distill", "kind")
@config_option("distill", "temperature")
@config_option("distill", "temperature_end", type=float, help="Anneal the temperature linearly to this value.")
@config_option("distill", "alpha", help="Weight on the hard-label loss.")
@click.option("--hint", "hints", multiple=True, metavar="STUDENT_LAYER:TEACHER_LAYER",
              help="FitNets hint pair (repeatable).")
@config_option("distill", "hint_weight")
@click.option("--colour-jitter/--no-colour-jitter", default=True, show_default=True)
@click.option("--controls", "control_names", default="independent", show_default=True,
              help="Comma-separated controls to train beside the KD student: independent, pseudo_label, "
                   "random_teacher, other_teacher (needs --other-teacher); 'none' for none.")
@click.option("--other-teacher", "other_teacher_ref", default=None,
              help="The teacher of the 'other_teacher' control (e.g. one trained without colour jitter).")
@click.option("--transfer", "transfer_spec", default=None,
              help="Unlabelled transfer images the teacher labels (their labels are never read), e.g. probeworld "
                   "(its transfer split).")
@click.option("--n-transfer", type=click.IntRange(1), default=None, help="Cap on transfer images.")
@click.option("--seed", default=0, show_default=True)
@click.option("--name", default="kd_student", show_default=True)
@model_source_options
@click.option("--quiet", is_flag=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def compress_distill(teacher_ref: str, student_arch: str, width: int | None, blocks: int | None, data_spec: str,
                     n_train: int | None, image_size: int | None, epochs: int, batch_size: int, lr: float, kind: str,
                     temperature: float, temperature_end: float | None, alpha: float, hints: tuple[str, ...],
                     hint_weight: float, colour_jitter: bool, control_names: str, other_teacher_ref: str | None,
                     transfer_spec: str | None, n_transfer: int | None, seed: int, name: str,
                     source: ModelSource, quiet: bool, out: Path) -> None:
    """Distil a teacher into a zoo student; writes OUT/NAME.pt and, by default, OUT/NAME_independent.pt (one
    OUT/NAME_CONTROL.pt per control)."""
    controls = tuple(c.strip() for c in control_names.split(",") if c.strip() and c.strip() != "none")
    train_data = load_data(data_spec, "train", n_train, image_size, seed)
    transfer = load_data(transfer_spec, "transfer", n_transfer, image_size, seed) if transfer_spec else None
    eval_data = load_data(data_spec, "test", None, image_size, seed)
    pairs = []
    for hint in hints:
        student_layer, sep, teacher_layer = hint.partition(":")
        if not sep or not student_layer or not teacher_layer:
            raise click.BadParameter(f"expected STUDENT_LAYER:TEACHER_LAYER, got {hint!r}", param_hint="--hint")
        pairs.append((student_layer, teacher_layer))
    kwargs = {k: v for k, v in (("width", width), ("blocks", blocks)) if v is not None}
    try:
        teacher = source.load(teacher_ref, role="teacher")
        other_teacher = source.load(other_teacher_ref, role="other") if other_teacher_ref else None
        train_data, eval_data = source.fit([teacher], train_data), source.fit([teacher], eval_data)
        student = zoo.build(student_arch, train_data.num_classes, seed=seed,
                            in_channels=train_data.image_shape[0], **kwargs)
        schedule = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                               augment=Augment.colour_jitter() if colour_jitter else Augment())
        config = DistillConfig(kind=kind, temperature=temperature, temperature_end=temperature_end, alpha=alpha,
                               hints=tuple(pairs), hint_weight=hint_weight)
        result = distill(teacher, train_data, config, student=student, train=schedule, transfer=transfer,
                         controls=controls, other_teacher=other_teacher, eval_data=eval_data, out=out, name=name,
                         progress=not quiet)
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    for made in (result, *result.controls):
        _report(made)


teacher_option = click.option("--teacher", "teacher_ref", required=True,
                               help="The model to compress: any model reference `kdscope evaluate` takes.")
out_option = click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)


@compress.command("prune")
@teacher_option
@click.option("--method", type=click.Choice([m.name for m in METHODS.values() if m.command == "prune"]),
              default="magnitude", show_default=True, help="Unstructured magnitude masks, L1 filter removal, or "
              "iterative pruning with rewinding (retrains the teacher's architecture from scratch each round).")
@config_option("magnitude", "sparsity", help="magnitude: fraction of weights removed.")
@config_option("magnitude", "scope", help="magnitude and lottery: rank weights over the model or per layer.")
@click.option("--layer", "layers", multiple=True, help="Prune only these Conv2d/Linear layers (repeatable).")
@config_option("structured", "ratio", help="structured: fraction of channels removed.")
@config_option("lottery", "rounds", type=click.IntRange(1), help="lottery: pruning rounds.")
@config_option("lottery", "rate", help="lottery: fraction of survivors per round.")
@config_option("lottery", "rewind_epoch", type=click.IntRange(0), help="lottery: the epoch tickets rewind to.")
@click.option("--data", "data_spec", default="probeworld", show_default=True)
@click.option("--n-train", type=click.IntRange(1), default=None, help="Cap on training images.")
@image_size_option
@click.option("--epochs", type=click.IntRange(0), default=4, show_default=True,
              help="Fine-tuning epochs (0: none); lottery: training epochs per round.")
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--recover/--no-recover", default=False, show_default=True,
              help="Fine-tune by distillation from the unpruned teacher instead of cross-entropy.")
@click.option("--seed", default=0, show_default=True)
@click.option("--name", default=None, help="Model name (default: TEACHER_pruned80, TEACHER_filters50, ticket).")
@model_source_options
@click.option("--quiet", is_flag=True)
@out_option
def compress_prune(teacher_ref: str, method: str, sparsity: float, scope: str, layers: tuple[str, ...], ratio: float,
                   rounds: int, rate: float, rewind_epoch: int, data_spec: str, n_train: int | None,
                   image_size: int | None, epochs: int, lr: float, recover: bool, seed: int, name: str | None,
                   source: ModelSource, quiet: bool, out: Path) -> None:
    """Prune a copy of the teacher; writes OUT/NAME.pt + OUT/NAME.json (lineage included)."""
    train_data = load_data(data_spec, "train", n_train, image_size, seed)
    eval_data = load_data(data_spec, "test", None, image_size, seed)
    fine_tune = TrainConfig(epochs=epochs, lr=lr, seed=seed, warmup_epochs=0) if epochs else None
    recover_config = DistillConfig() if recover else None
    if recover and fine_tune is None:
        raise click.BadParameter("--recover needs --epochs >= 1", param_hint="--recover")
    try:
        teacher = source.load(teacher_ref, role="teacher")
        train_data, eval_data = source.fit([teacher], train_data), source.fit([teacher], eval_data)
        if method == "magnitude":
            config = PruneConfig(sparsity, scope, tuple(layers) or None)
            results = [prune(teacher, train_data, config, train=fine_tune, recover=recover_config,
                             eval_data=eval_data, out=out, name=name, progress=not quiet)]
        elif method == "structured":
            results = [structured_prune(teacher, train_data, StructuredConfig(ratio), train=fine_tune,
                                        recover=recover_config, eval_data=eval_data, out=out, name=name,
                                        progress=not quiet)]
        else:
            schedule = TrainConfig(epochs=max(epochs, rewind_epoch + 1), lr=lr, seed=seed)
            config = LotteryConfig(rounds, rate, rewind_epoch, scope)
            results = _lottery(teacher, train_data, eval_data, schedule, config, name or "ticket", out, quiet)
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    for result in results:
        _report(result)


def _lottery(teacher: Subject, train_data: ImageSet, eval_data: ImageSet, schedule: TrainConfig,
             config: LotteryConfig, name: str, out: Path, quiet: bool) -> list[Compressed]:
    """Retrain the teacher's architecture (its zoo architecture or its factory) from a fresh seeded initialisation,
    round by round; every ticket and its random-reinitialisation control are saved."""
    arch, factory = teacher.metadata.get("arch"), getattr(teacher.model, FACTORY_ATTRIBUTE, None)
    if arch:
        network, label = zoo.build(arch["name"], seed=schedule.seed, **arch["kwargs"]), arch["name"]
    elif factory:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(schedule.seed)
            network, label = build_from_factory(factory), factory.rpartition(":")[2]
    else:
        raise ValueError("lottery tickets retrain the teacher's architecture from scratch: give the teacher as a "
                         "kdscope zoo checkpoint or as 'package.module:function' with --weights")
    mean, std = train_data.channel_stats()
    initial = Subject(network, name=f"{label}_init_seed{schedule.seed}", mean=mean, std=std,
                      class_names=train_data.class_names, output=teacher.output)
    result = lottery_ticket(initial, train_data, config, train=schedule, eval_data=eval_data, out=out, name=name,
                            progress=not quiet)
    return [made for ticket in result.rounds for made in (ticket, ticket.control) if made is not None]


@compress.command("quantize")
@teacher_option
@config_option("quantize", "mode")
@config_option("quantize", "calibration", help="How activation ranges are set from the calibration images.")
@config_option("quantize", "calibration_images", type=click.IntRange(1))
@click.option("--qat-epochs", type=click.IntRange(1), default=2, show_default=True)
@click.option("--lr", type=float, default=0.005, show_default=True, help="qat: learning rate.")
@click.option("--data", "data_spec", default="probeworld", show_default=True)
@click.option("--n-train", type=click.IntRange(1), default=None, help="Cap on training/calibration images.")
@image_size_option
@click.option("--seed", default=0, show_default=True)
@click.option("--name", default=None, help="Model name (default: TEACHER_int8).")
@model_source_options
@click.option("--quiet", is_flag=True)
@out_option
def compress_quantize(teacher_ref: str, mode: str, calibration: str, calibration_images: int, qat_epochs: int,
                      lr: float, data_spec: str, n_train: int | None, image_size: int | None, seed: int,
                      name: str | None, source: ModelSource, quiet: bool, out: Path) -> None:
    """Quantize a copy of the teacher; writes OUT/NAME.pt2 (int8 graph) or OUT/NAME.pt (bf16) + OUT/NAME.json."""
    train_data = load_data(data_spec, "train", n_train, image_size, seed)
    eval_data = load_data(data_spec, "test", None, image_size, seed)
    try:
        teacher = source.load(teacher_ref, role="teacher")
        train_data, eval_data = source.fit([teacher], train_data), source.fit([teacher], eval_data)
        result = quantize(teacher, train_data, QuantizeConfig(mode, calibration, calibration_images),
                          train=TrainConfig(epochs=qat_epochs, lr=lr, seed=seed, warmup_epochs=0)
                          if mode == "qat" else None,
                          eval_data=eval_data, out=out, name=name, progress=not quiet)
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    _report(result)


def _report(result: Compressed) -> None:
    """One JSON line per model written: what a script needs to pick it up."""
    lineage, metrics = result.lineage, result.lineage.metrics
    click.echo(json.dumps({"model": lineage.name, "method": lineage.method, "parent": lineage.parent,
                           "accuracy": metrics.get("accuracy"), "accuracy_ci95": metrics.get("accuracy_ci95"),
                           **{k: metrics[k] for k in ("sparsity", "twin_int8_top1_agreement") if k in metrics},
                           "checkpoint": str(result.checkpoint)}))
