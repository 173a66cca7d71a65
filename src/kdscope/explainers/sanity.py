"""Sanity checks for saliency maps (Adebayo et al. 2018): does a method's map change when the model's weights are
randomised, or when the model was trained on random labels? A method whose maps survive randomisation explains
the input, not the model.

Cascading randomisation re-initialises layers from the logits down, one more per step; independent randomisation
one layer at a time. Re-initialisation is seeded per layer and acts on the weights the model really uses: a pruned
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
from kdscope.explainers.registry import explain
from kdscope.explainers.similarity import METRICS, map_similarity, pointing_game, relevance_mass
from kdscope.stats import bootstrap_ci
from kdscope.subject import Subject

PASS_THRESHOLD = 0.5
"""A method passes cascading randomisation when the mean Spearman correlation of |map| between the trained model
and the fully randomised model is below this value: its maps depend on the weights."""


@dataclass
class SanityStep:
    """Similarity of the maps after one randomisation step to the original maps: (mean, low, high) per metric."""

    step: int
    layers: list[str]
    similarity: dict[str, tuple[float, float, float]]


@dataclass
class SanityResult:
    method: str
    kind: str
    steps: list[SanityStep] = field(default_factory=list)
    verdict: str = ""

    def to_dict(self) -> dict:
        return {"method": self.method, "kind": self.kind, "verdict": self.verdict, "threshold": PASS_THRESHOLD,
                "steps": [{"step": s.step, "layers": s.layers, "similarity": {k: list(v) for k, v in
                                                                            s.similarity.items()}}
                          for s in self.steps]}


def randomizable_layers(model: nn.Module) -> list[str]:
    """Conv2d and Linear layers in definition order (input to logits; a TorchScript module's by their original
    class); for an int8 twin, its int8 weight constants in graph order."""
    if isinstance(model, fx.GraphModule) and _int8_weights(model):
        return list(_int8_weights(model))
    if isinstance(model, fx.GraphModule):
        return _graph_layers(model)
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear)) or
            getattr(module, "original_name", None) in ("Conv2d", "Linear")]


_WEIGHTED_OPS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default, torch.ops.aten.convolution.default)


def _graph_layers(graph_module: fx.GraphModule) -> list[str]:
    """The modules holding the weights of a graph's convolutions and linear maps, in graph order (an exported
    program keeps its parameters in plain container modules, not Conv2d or Linear)."""
    layers = []
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target in _WEIGHTED_OPS and len(node.args) > 1:
            weight = node.args[1]
            if isinstance(weight, fx.Node) and weight.op == "get_attr" and weight.target.endswith(".weight"):
                layer = weight.target.removesuffix(".weight")
                if layer not in layers:
                    layers.append(layer)
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
        result.steps.append(SanityStep(step, chosen, _compare(subject, chosen, x, target, method, params, original,
                                                              seed)))
    full = result.steps[-1].similarity["spearman_abs"][0]
    result.verdict = "pass" if full < PASS_THRESHOLD else "fail"
    return result


def independent_randomization(subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
                              method: str = "gradcam", seed: int = 0, **params: object) -> SanityResult:
    """Randomise one layer at a time (the rest trained) and compare with the trained model's maps."""
    layers = _layers_or_fail(subject)
    original = explain(subject, x, target, method=method, **params).maps_2d
    result = SanityResult(method, "independent")
    for step, layer in enumerate(layers, start=1):
        result.steps.append(SanityStep(step, [layer], _compare(subject, [layer], x, target, method, params, original,
                                                               seed)))
    return result


def data_randomization(subject: Subject, random_label_subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
                       method: str = "gradcam", **params: object) -> SanityResult:
    """Compare the maps of the real model with those of the same architecture trained on permuted labels."""
    original = explain(subject, x, target, method=method, **params).maps_2d
    other = explain(random_label_subject, x, target, method=method, **params).maps_2d
    result = SanityResult(method, "data")
    result.steps.append(SanityStep(1, ["random labels"], _summarise(map_similarity(original, other))))
    result.verdict = "pass" if result.steps[0].similarity["spearman_abs"][0] < PASS_THRESHOLD else "fail"
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
        weight.copy_(torch.round(drawn / scale).clamp(-128, 127).to(weight.dtype))
    return len(names)


def _layers_or_fail(subject: Subject) -> list[str]:
    layers = randomizable_layers(subject.gradient_model)
    if not layers:
        raise ValueError(f"{subject.name} has no Conv2d or Linear layer to randomise: zero layers randomised, so "
                         "the check would compare the model with itself")
    return layers


def _compare(subject: Subject, layers: list[str], x: torch.Tensor, target: torch.Tensor, method: str, params: dict,
             original: torch.Tensor, seed: int) -> dict[str, tuple[float, float, float]]:
    model = _copy_model(subject.gradient_model)
    if randomize(model, layers, seed) == 0:
        raise RuntimeError("zero layers were randomised")
    randomized = Subject(model, name=f"{subject.name}_randomized", mean=_listed(subject.mean),
                         std=_listed(subject.std), input_range=subject.input_range)
    maps = explain(randomized, x, target, method=method, **params).maps_2d
    return _summarise(map_similarity(original, maps))


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
    return {metric: bootstrap_ci(per_image[metric]) for metric in METRICS}


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
