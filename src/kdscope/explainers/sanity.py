"""Sanity checks for saliency maps (Adebayo et al. 2018): does a method's map change when the model's weights are
randomised, or when the model was trained on random labels? A method whose maps survive randomisation explains
the input, not the model.

Cascading randomisation re-initialises layers from the logits down, one more per step; independent randomisation
one layer at a time. Convolutions and linear layers are redrawn as PyTorch initialises them, normalisation layers
reset to their initial state, so the end point is Adebayo's randomly initialised network. A map that is constant
has no ranking: it is counted apart, never scored as a complete change. Re-initialisation is seeded per layer and
acts on the weights the model really uses: a pruned
layer keeps its mask (its stored weights are redrawn, its zeros stay zero); an int8 Subject is randomised through
its fake-quant twin, whose int8 weight constants are redrawn and re-quantized (the randomised model's maps then all
come from that twin). Zero randomisable layers is an error.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx, nn

from kdscope.compress.masks import mask_of, weight_of
from kdscope.compress.quant_backend import WEIGHT_RANGE
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.explainers.registry import explain
from kdscope.explainers.similarity import METRICS, degenerate_maps, map_similarity, pointing_game, relevance_mass

PASS_THRESHOLD = 0.5
"""A method passes cascading randomisation when the mean Spearman correlation of |map| between the trained model
and the fully randomised model is below this value: its maps depend on the weights."""


@dataclass
class SanityStep:
    """Similarity of the maps after one randomisation step to the original maps: (mean, low, high) per metric over
    the images where both maps vary; `degenerate` counts the images where one of them is constant (no ranking)."""

    step: int
    layers: list[str]
    similarity: dict[str, tuple[float, float, float]]
    degenerate: int = 0


@dataclass
class SanityResult:
    """A check's steps and verdict: 'pass', 'fail' or 'inconclusive' (most final maps constant), with the reason.
    `randomised_share` is the share of the model's parameters the full randomisation redrew; `random_vs_random`
    compares the maps of two differently seeded, fully randomised models: when those agree as much as the trained
    model agrees with either, the maps follow the architecture and input size, not the weights."""

    method: str
    kind: str
    steps: list[SanityStep] = field(default_factory=list)
    verdict: str = ""
    reason: str = ""
    images: int = 0
    randomised_share: float | None = None
    random_vs_random: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        return {"method": self.method, "kind": self.kind, "verdict": self.verdict, "reason": self.reason,
                "threshold": PASS_THRESHOLD, "images": self.images, "randomised_share": self.randomised_share,
                "random_vs_random": None if self.random_vs_random is None else list(self.random_vs_random),
                "steps": [{"step": s.step, "layers": s.layers, "degenerate": s.degenerate,
                           "similarity": {k: list(v) for k, v in s.similarity.items()}} for s in self.steps]}


CONVOLUTION_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORMALISATION_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d,
                        nn.InstanceNorm2d, nn.InstanceNorm3d)
_CONVOLUTION_NAMES = {cls.__name__ for cls in CONVOLUTION_LAYERS}
_NORMALISATION_NAMES = {cls.__name__ for cls in NORMALISATION_LAYERS}


def randomizable_layers(model: nn.Module) -> list[str]:
    """Convolutions (1-3-D, transposed too), Linear and normalisation layers in definition order (input to logits;
    a TorchScript module's by their original class): Adebayo's end point is a randomly initialised network, and a
    trained BatchNorm or Conv1d (an ECA gate) left in place keeps part of the trained model. For an int8 twin, its
    int8 weight constants in graph order (its normalisations are folded into them)."""
    if isinstance(model, fx.GraphModule) and _int8_weights(model):
        return list(_int8_weights(model))
    if isinstance(model, fx.GraphModule):
        return _graph_layers(model)
    return [name for name, module in model.named_modules() if _has_weights(module) and (
        isinstance(module, (*CONVOLUTION_LAYERS, nn.Linear, *NORMALISATION_LAYERS)) or
        getattr(module, "original_name", None) in (*_CONVOLUTION_NAMES, "Linear", *_NORMALISATION_NAMES))]


def _has_weights(module: nn.Module) -> bool:
    """A layer with something to randomise (a normalisation without affine parameters or running statistics has
    nothing)."""
    return any(True for _ in module.parameters(recurse=False)) or getattr(module, "running_mean", None) is not None


_WEIGHTED_OPS = {getattr(torch.ops.aten, op) for op in (
    "linear", "convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "batch_norm", "_native_batch_norm_legit_no_training", "layer_norm", "group_norm")}
"""aten ops that take a layer's weight, with every overload (conv2d.padding is a Conv2d with padding='same')."""


def _graph_layers(graph_module: fx.GraphModule) -> list[str]:
    """The modules holding the weights of a graph's convolutions, linear maps and normalisations, in graph order
    (an exported program keeps its parameters in plain container modules, not Conv2d or BatchNorm2d)."""
    layers = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or getattr(node.target, "overloadpacket", None) not in _WEIGHTED_OPS:
            continue
        for weight in node.args[1:3]:
            if isinstance(weight, fx.Node) and weight.op == "get_attr" and weight.target.endswith(".weight"):
                layer = weight.target.removesuffix(".weight")
                if layer not in layers:
                    layers.append(layer)
                break
    return layers


@torch.no_grad()
def randomize(model: nn.Module, names: list[str], seed: int) -> int:
    """Redraw the weights and biases of the named layers in place (uniform in +-1/sqrt(fan_in), as PyTorch
    initialises them), each layer with its own seed; masks stay. An int8 twin's weight constants are redrawn the
    same way and re-quantized with their own per-channel scales. Returns how many layers were randomised."""
    if isinstance(model, fx.GraphModule) and _int8_weights(model):
        return _randomize_int8(model, names, seed)
    modules = dict(model.named_modules())
    for offset, name in enumerate(names):
        module = modules[name]
        if _is_normalisation(module):
            _initial_normalisation(module)
            continue
        generator = torch.Generator().manual_seed(seed + 7919 * offset)
        weight = weight_of(module)
        fan_in = weight[0].numel()
        bound = 1 / fan_in ** 0.5
        weight.copy_((torch.rand(weight.shape, generator=generator) * 2 - 1).to(weight) * bound)
        mask = mask_of(module)
        if mask is not None:
            weight.mul_(mask)
        bias = getattr(module, "bias", None)
        if bias is not None:
            bias.copy_((torch.rand(bias.shape, generator=generator) * 2 - 1).to(bias) * bound)
    return len(names)


def _is_normalisation(module: nn.Module) -> bool:
    """A normalisation layer, also as a TorchScript module or an exported graph's plain container: one scale per
    channel (a 1-D weight) or running statistics."""
    weight = getattr(module, "weight", None)
    return (isinstance(module, NORMALISATION_LAYERS) or getattr(module, "original_name", None) in _NORMALISATION_NAMES
            or getattr(module, "running_mean", None) is not None
            or (isinstance(weight, torch.Tensor) and weight.ndim == 1))


def _initial_normalisation(module: nn.Module) -> None:
    """A normalisation layer as PyTorch initialises it: scale 1, shift 0, running mean 0 and variance 1."""
    for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
        tensor = getattr(module, name, None)
        if isinstance(tensor, torch.Tensor):
            tensor.fill_(value)


def cascading_randomization(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, method: str = "gradcam",
                            seed: int = 0, order: str = "top_down", **params: object) -> SanityResult:
    """Randomise the top 1, 2, ... layers (or, with order='bottom_up', the first 1, 2, ... from the input) and
    compare each step's maps with the trained model's."""
    if order not in ("top_down", "bottom_up"):
        raise ValueError(f"order must be 'top_down' or 'bottom_up', got {order!r}")
    layers = _layers_or_fail(subject)
    original = explain(subject, x, target, method=method, **params).maps_2d
    result = SanityResult(method, "cascading" if order == "top_down" else "cascading_bottom_up")
    sequence = layers[::-1] if order == "top_down" else layers
    for step in range(1, len(layers) + 1):
        chosen = sequence[:step]
        maps = _maps_after(subject, chosen, x, target, method, params, seed)
        result.steps.append(SanityStep(step, chosen, _summarise(map_similarity(original, maps)),
                                       int(degenerate_maps(original, maps).sum())))
    result.images = len(x)
    result.randomised_share = randomised_share(subject.gradient_model, layers)
    other_random = _maps_after(subject, sequence, x, target, method, params, seed + 1)
    result.random_vs_random = _summarise(map_similarity(maps, other_random))["spearman_abs"]
    result.verdict, result.reason = judge(result)
    return result


def randomised_share(model: nn.Module, layers: list[str]) -> float:
    """Share of the model's parameter and running-statistic values that lie in the randomised layers."""
    if isinstance(model, fx.GraphModule) and _int8_weights(model):
        total = sum(t.numel() for t in model.state_dict().values() if t.dtype == torch.int8)
        return sum(getattr(model, name).numel() for name in layers) / max(total, 1)
    modules = dict(model.named_modules())

    def values(module: nn.Module) -> int:
        statistics = [t for name, t in module.named_buffers(recurse=False) if name.startswith("running_")]
        return sum(t.numel() for t in (*module.parameters(recurse=False), *statistics) if t.is_floating_point())

    total = sum(values(m) for m in modules.values())
    return sum(values(modules[name]) for name in layers) / max(total, 1)


def judge(result: SanityResult) -> tuple[str, str]:
    """(verdict, why) from the last step, the degenerate maps, the coverage and the random-vs-random control."""
    last = result.steps[-1]
    full = last.similarity["spearman_abs"][0]
    if last.degenerate * 2 > result.images or full != full:
        return "inconclusive", (f"{last.degenerate} of {result.images} maps are constant with every layer "
                                "randomised: they have no ranking to compare")
    if result.kind == "data":
        alike = "unlike" if full < PASS_THRESHOLD else "as alike as"
        return ("pass" if full < PASS_THRESHOLD else "fail"), (
            f"the maps of the model trained on random labels are {alike} the real model's (Spearman |map| {full:.2f})")
    if full < PASS_THRESHOLD:
        return "pass", f"the maps change when the weights are randomised (Spearman |map| {full:.2f})"
    control = result.random_vs_random[0] if result.random_vs_random else float("nan")
    if result.randomised_share is not None and result.randomised_share < 0.99:
        return "fail", (f"only {result.randomised_share:.0%} of the model's weights were randomised: the rest "
                        "(layers kdscope cannot randomise) may carry the maps")
    if control == control and control >= PASS_THRESHOLD:
        return "fail", (f"two differently randomised models give maps as alike as each is to the trained model's "
                        f"(Spearman {control:.2f}): the maps follow the architecture and input size, not the weights")
    return "fail", f"the maps survive randomisation of every layer (Spearman |map| {full:.2f})"


def independent_randomization(subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
                              method: str = "gradcam", seed: int = 0, **params: object) -> SanityResult:
    """Randomise one layer at a time (the rest trained) and compare with the trained model's maps."""
    layers = _layers_or_fail(subject)
    original = explain(subject, x, target, method=method, **params).maps_2d
    result = SanityResult(method, "independent")
    for step, layer in enumerate(layers, start=1):
        result.steps.append(SanityStep(step, [layer], *_compare(subject, [layer], x, target, method, params,
                                                                original, seed)))
    return result


def data_randomization(subject: Subject, random_label_subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
                       method: str = "gradcam", **params: object) -> SanityResult:
    """Compare the maps of the real model with those of the same architecture trained on permuted labels."""
    original = explain(subject, x, target, method=method, **params).maps_2d
    other = explain(random_label_subject, x, target, method=method, **params).maps_2d
    result = SanityResult(method, "data")
    result.steps.append(SanityStep(1, ["random labels"], _summarise(map_similarity(original, other)),
                                   int(degenerate_maps(original, other).sum())))
    result.images = len(x)
    result.verdict, result.reason = judge(result)
    return result


def _int8_weights(graph_module: fx.GraphModule) -> dict[str, str]:
    """int8 weight constant -> its per-channel scale constant, read from the dequantize_per_channel nodes."""
    found = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and str(node.target) == "quantized_decomposed.dequantize_per_channel.default":
            weight, scale = node.args[0], node.args[1]
            if weight.op == "get_attr" and scale.op == "get_attr":
                found[weight.target] = scale.target
    return found


def _randomize_int8(graph_module: fx.GraphModule, names: list[str], seed: int) -> int:
    scales = _int8_weights(graph_module)
    for offset, name in enumerate(names):
        weight = getattr(graph_module, name)
        scale = getattr(graph_module, scales[name]).view(-1, *([1] * (weight.ndim - 1)))
        generator = torch.Generator().manual_seed(seed + 7919 * offset)
        bound = 1 / weight[0].numel() ** 0.5
        drawn = (torch.rand(weight.shape, generator=generator) * 2 - 1) * bound
        weight.copy_(torch.round(drawn / scale).clamp(*WEIGHT_RANGE).to(weight.dtype))
    return len(names)


def _layers_or_fail(subject: Subject) -> list[str]:
    layers = randomizable_layers(subject.gradient_model)
    if not layers:
        raise ValueError(f"{subject.name} has no convolution, Linear or normalisation layer to randomise: zero "
                         "layers randomised, so the check would compare the model with itself")
    return layers


def _compare(subject: Subject, layers: list[str], x: torch.Tensor, target: torch.Tensor, method: str, params: dict,
             original: torch.Tensor, seed: int) -> tuple[dict[str, tuple[float, float, float]], int]:
    """(similarity of the maps after randomising `layers` to the original ones, images with a constant map)."""
    maps = _maps_after(subject, layers, x, target, method, params, seed)
    return _summarise(map_similarity(original, maps)), int(degenerate_maps(original, maps).sum())


def _maps_after(subject: Subject, layers: list[str], x: torch.Tensor, target: torch.Tensor, method: str,
                params: dict, seed: int) -> torch.Tensor:
    """The method's maps on a copy of the model with `layers` randomised."""
    model = _copy_model(subject.gradient_model)
    if randomize(model, layers, seed) == 0:
        raise RuntimeError("zero layers were randomised")
    randomized = Subject(model, name=f"{subject.name}_randomized", mean=_listed(subject.mean),
                         std=_listed(subject.std), input_range=subject.input_range)
    return explain(randomized, x, target, method=method, **params).maps_2d


def _copy_model(model: nn.Module) -> nn.Module:
    """An independent copy to randomise. A TorchScript module goes through save and load: its deep copy's
    parameters are not leaves, so their gradients could not be switched off."""
    if isinstance(model, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*torch.jit.(save|load).*deprecated", DeprecationWarning)
            torch.jit.save(model, buffer)
            buffer.seek(0)
            return torch.jit.load(buffer, map_location="cpu")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        return copy.deepcopy(model)


def _summarise(per_image: dict[str, np.ndarray]) -> dict[str, tuple[float, float, float]]:
    """(mean, low, high) per metric over the images where it is defined (NaN: a constant map, counted apart)."""
    nan = (float("nan"),) * 3
    return {metric: bootstrap_ci(values[np.isfinite(values)]) if np.isfinite(values).any() else nan
            for metric, values in per_image.items() if metric in METRICS}


def _listed(values: torch.Tensor | None) -> list[float] | None:
    return None if values is None else values.flatten().tolist()


def localisation(subject: Subject, x: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, *,
                 method: str = "gradcam", **params: object) -> dict[str, tuple[float, float, float]]:
    """Pointing game (is the map's peak on the object?) and relevance mass inside the object mask, each as
    (mean, low, high) over images with a 95% bootstrap interval."""
    masks = torch.as_tensor(masks)
    if masks.shape != (len(x), *x.shape[2:]):
        raise ValueError(f"masks must be (N, H, W) = {(len(x), *x.shape[2:])}, got {tuple(masks.shape)}")
    return localisation_of(explain(subject, x, target, method=method, **params).maps_2d, masks)


def localisation_of(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, tuple[float, float, float]]:
    """Pointing game and relevance mass of (N, H, W) maps already computed, with 95% bootstrap intervals."""
    return {"pointing_game": bootstrap_ci(pointing_game(maps, masks).astype(float)),
            "relevance_mass": bootstrap_ci(relevance_mass(maps, masks))}
