"""The one place that knows how int8 models are made: torchao's PT2E flow.

torch.export -> X86InductorQuantizer annotations -> prepare (observers or fake-quant) -> calibrate or train ->
convert (a reference graph of quantize/dequantize ops around float ops) -> torch.compile, whose Inductor backend fuses
the patterns into real int8 oneDNN kernels. The reference graph is also the source of the differentiable twin: each
quantize/dequantize pair becomes a straight-through fake-quantize with the same scale and zero point.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import torch
from torch import fx, nn

CALIBRATIONS = ("minmax", "histogram", "percentile")
# Weights are quantized to 7 bits, [-64, 63]. oneDNN's int8 convolutions and matmuls on x86 CPUs without VNNI
# (AVX2, AVX-512 without VNNI) multiply uint8 activations by int8 weights in pairs whose sums are held in int16 with
# saturation: with full-range weights, 2 * 255 * 128 overflows, and the compiled model silently differs from its own
# reference graph (measured on an AVX2 CPU: logits off by about their spread, for a single Linear or Conv2d). With
# 7-bit weights every pair sum fits (2 * 255 * 64 <= 32767) on every x86 CPU, and the compiled model computes what
# the reference graph and the twin compute, bit for bit. Activations keep their 8 bits (per-tensor ranges, where
# precision matters more than in per-channel weights).
WEIGHT_RANGE = (-64, 63)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep torchao's and Inductor's import chatter and deprecation warnings away from the user."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch._dynamo", "torch._inductor", "torch.export",
                                                     "torch.utils._pytree",
                                                     "torch.fx.experimental.symbolic_shapes")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _torchao():
    with quiet():
        import torchao.quantization.pt2e as pt2e
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
    return pt2e, x86, prepare_pt2e, prepare_qat_pt2e, convert_pt2e


def _dynamic_batch() -> tuple[dict, ...]:
    """The batch axis of the one positional input, whatever the model's forward calls it (`x`, `pixel_values`)."""
    return ({0: torch.export.Dim.DYNAMIC},)


def export(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """Capture `model` (in its current mode) as an ATen graph with a dynamic batch axis; a model torch.export
    cannot capture is refused with torch's reason, as int8 has no other way in."""
    try:
        with quiet():
            return torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch()).module()
    except Exception as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(f"int8 quantization needs a model that torch.export can capture with a dynamic batch axis, "
                         f"and it failed: {type(error).__name__}: {reason}. Make the forward pass exportable (no "
                         f"data-dependent Python control flow, no batch size fixed in the code), or use "
                         f"mode='bf16'.") from error


def _quantizer(calibration: str, *, qat: bool = False, dynamic: bool = False, linear_only: bool = False):
    pt2e, x86, *_ = _torchao()
    config = x86.get_default_x86_inductor_quantization_config(is_qat=qat, is_dynamic=dynamic)
    if not qat and not dynamic and calibration != "histogram":
        observer = pt2e.MinMaxObserver if calibration == "minmax" else _percentile_observer_class()
        config = _with_activation_observer(config, observer)
    config = replace(config, weight=replace(config.weight, quant_min=WEIGHT_RANGE[0], quant_max=WEIGHT_RANGE[1]))
    quantizer = x86.X86InductorQuantizer()
    if linear_only:
        quantizer.set_module_type_qconfig(nn.Linear, config)
    else:
        quantizer.set_global(config)
    return quantizer


def _with_activation_observer(config, observer):
    spec = replace(config.input_activation, observer_or_fake_quant_ctr=observer.with_args(eps=2**-12))
    return replace(config, input_activation=spec, output_activation=spec)


def prepare(model: nn.Module, example: torch.Tensor, *, calibration: str = "minmax", qat: bool = False,
            dynamic: bool = False, linear_only: bool = False) -> fx.GraphModule:
    """Export and insert observers (PTQ) or fake-quant modules (QAT). Convs and linears get per-channel symmetric
    int8 weights in `WEIGHT_RANGE`; activations get per-tensor affine uint8 observed by `calibration`."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    pt2e, _, prepare_pt2e, prepare_qat_pt2e, _ = _torchao()
    quantizer = _quantizer(calibration, qat=qat, dynamic=dynamic, linear_only=linear_only)
    with quiet():
        if qat:
            with torch.no_grad():
                graph = export(model.train(), example)
            prepared = prepare_qat_pt2e(graph, quantizer)
            pt2e.allow_exported_model_train_eval(prepared)
            return prepared
        return prepare_pt2e(export(model, example), quantizer)


@torch.no_grad()
def calibrate(prepared: fx.GraphModule, batches: Iterable[torch.Tensor]) -> None:
    """Run normalised batches through the observers."""
    with quiet():
        for batch in batches:
            prepared(batch)


def convert(prepared: fx.GraphModule) -> fx.GraphModule:
    """The reference int8 graph, with the float weights it no longer uses dropped."""
    pt2e, *_, convert_pt2e = _torchao()
    with quiet():
        if hasattr(prepared, "eval"):
            pt2e.move_exported_model_to_eval(prepared)
        converted = convert_pt2e(prepared)
    _drop_unused_attributes(converted)
    return converted


class CompiledInt8(nn.Module):
    """The reference graph compiled by Inductor (weight freezing on) so that it runs on int8 kernels.

    It always runs without autograd: compiled inference graphs serve every call, and gradients come from the
    fake-quant twin. Inductor picks kernels per batch-size range (1, 2-15, 16+) and compiles a range on its
    first call (about 10 s for a small CNN on two cores), so loading costs nothing and a model compiles only the
    ranges it is run in; `warm_up` compiles all three ahead (for timings). Strided 1x1 convolutions are compiled
    as unit-stride ones on a strided slice of their input (`unit_stride_1x1`), which keeps the kernels
    deterministic on AVX2 CPUs."""

    def __init__(self, reference: fx.GraphModule) -> None:
        super().__init__()
        self.compiled = torch.compile(unit_stride_1x1(reference), dynamic=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A first call in a batch-size range compiles, with weight freezing (the int8 kernels need it; set only
        during the call, so the user's own Inductor configuration stays as it was) and without its chatter."""
        import torch._inductor.config as inductor_config

        with torch.no_grad(), quiet(), inductor_config.patch(freezing=True):
            return self.compiled(x)


def lower(reference: fx.GraphModule) -> nn.Module:
    with quiet():
        return CompiledInt8(reference)


_CONV2D_DEFAULTS = (None, None, None, [1, 1], [0, 0], [1, 1], 1)


def unit_stride_1x1(reference: fx.GraphModule) -> fx.GraphModule:
    """`reference`, or a copy of it (sharing its weights) in which every quantized 1x1 convolution with a stride and
    no padding reads the strided slice `x[:, :, ::s, ::s]` of its uint8 input at stride 1: the same products and
    sums, as such a convolution reads no other pixels.

    Why: on CPUs without AVX-512, oneDNN (3.12, bundled with PyTorch 2.13) runs a strided 1x1 int8 convolution on
    channels-last input with `jit_uni_int8_1x1:avx2`, whose strided path races when it has more than one thread:
    the same input gives different outputs from call to call (a ResNet shortcut: logits off by up to ~0.008, most
    calls distinct at some batch sizes). At unit stride the kernel is deterministic and gives the bits that one
    thread gives with the stride. The rewrite is exact, so wherever the strided kernel is right it changes nothing."""
    dequantize = {torch.ops.quantized_decomposed.dequantize_per_tensor.default,
                  torch.ops.quantized_decomposed.dequantize_per_tensor.tensor}
    graph = None
    for conv in list(reference.graph.nodes):
        if conv.op != "call_function" or conv.target is not torch.ops.aten.conv2d.default or conv.kwargs:
            continue
        x, weight, _, stride, padding, *rest = (*conv.args, *_CONV2D_DEFAULTS[len(conv.args):])
        stride, padding = list(stride) * (2 // len(stride)), list(padding) * (2 // len(padding))
        if (not isinstance(x, fx.Node) or x.target not in dequantize or stride == [1, 1] or any(padding)
                or _kernel_size(reference, weight) != (1, 1)):
            continue
        if graph is None:  # copy on the first match; `reference` itself (what is saved, and the twin) stays as it is
            with quiet():
                graph = copy.deepcopy(reference.graph)
            nodes = dict(zip(reference.graph.nodes, graph.nodes))
        conv, x = nodes[conv], nodes[x]
        with graph.inserting_before(conv):
            pixels = graph.call_function(torch.ops.aten.slice.Tensor, (x.args[0], 2, 0, None, stride[0]))
            pixels = graph.call_function(torch.ops.aten.slice.Tensor, (pixels, 3, 0, None, stride[1]))
            sliced = graph.call_function(x.target, (pixels, *x.args[1:]), dict(x.kwargs))
        conv.args = (sliced, conv.args[1], conv.args[2] if len(conv.args) > 2 else None, [1, 1], [0, 0], *rest)
        if not x.users:
            graph.erase_node(x)
    if graph is None:
        return reference
    graph.lint()
    return fx.GraphModule(reference, graph)


def _kernel_size(module: fx.GraphModule, weight: object) -> tuple[int, ...] | None:
    """Spatial size of a convolution's weight node: its traced value, or the int8 constant it dequantizes."""
    if not isinstance(weight, fx.Node):
        return None
    value = weight.meta.get("val")
    source = weight.args[0] if weight.args else None
    if value is None and isinstance(source, fx.Node) and source.op == "get_attr":
        value = functools.reduce(getattr, source.target.split("."), module)
    return tuple(value.shape[2:]) if isinstance(value, torch.Tensor) else None


def warm_up(module: nn.Module, example: torch.Tensor) -> None:
    """Compile every batch-size range now, so that no later call (a timed one) includes compiling."""
    with torch.no_grad(), quiet():
        for batch in (1, 2, 16):
            module(example[:1].expand(batch, *example.shape[1:]).contiguous())


def quantized_layers(reference: fx.GraphModule) -> tuple[list[str], list[str]]:
    """(quantized, left in float): module names of the convs and linears, read from the graph itself."""
    quantized, floating = [], []
    for node in reference.graph.nodes:
        if node.op != "call_function" or node.target not in (torch.ops.aten.conv2d.default,
                                                             torch.ops.aten.linear.default):
            continue
        stack = list(node.meta.get("nn_module_stack", {}).values())
        name = stack[-1][0] if stack else node.name
        weight = node.args[1]
        is_int8 = isinstance(weight, fx.Node) and "dequantize" in str(weight.target)
        (quantized if is_int8 else floating).append(name)
    return quantized, floating


def fake_quant_twin(reference: fx.GraphModule) -> fx.GraphModule:
    """A differentiable copy of the reference graph: quantize -> dequantize pairs become straight-through
    fake-quantization with the same parameters, so gradients reach the input while the forward pass rounds as int8."""
    with quiet():
        twin = copy.deepcopy(reference)
    quantize = {torch.ops.quantized_decomposed.quantize_per_tensor.default,
                torch.ops.quantized_decomposed.quantize_per_tensor.tensor}
    dequantize = {torch.ops.quantized_decomposed.dequantize_per_tensor.default,
                  torch.ops.quantized_decomposed.dequantize_per_tensor.tensor}
    for node in list(twin.graph.nodes):
        if node.op == "call_function" and node.target in quantize:
            node.target = _straight_through_quantize
        elif node.op == "call_function" and node.target in dequantize and (
                isinstance(node.args[0], fx.Node) and node.args[0].target is _straight_through_quantize):
            node.target = _already_dequantized
    twin.graph.lint()
    twin.recompile()
    return twin


def _straight_through_quantize(x: torch.Tensor, scale, zero_point, quant_min: int, quant_max: int,
                               _dtype: torch.dtype) -> torch.Tensor:
    if isinstance(scale, torch.Tensor):
        return torch.fake_quantize_per_tensor_affine(x, scale.float().reshape(()), zero_point.int().reshape(()),
                                                     quant_min, quant_max)
    return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), quant_min, quant_max)


def _already_dequantized(x: torch.Tensor, *_args: object) -> torch.Tensor:
    return x



def save(reference: fx.GraphModule, example: torch.Tensor, file: BinaryIO) -> None:
    """Write the reference graph as a torch.export archive (without the example inputs it would otherwise keep)."""
    with quiet():
        program = torch.export.export(reference, (example,), dynamic_shapes=_dynamic_batch())
        program._example_inputs = None
        torch.export.save(program, file)


def round_trip(reference: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """The graph that `load` gives back for an archive written by `save(reference, example)`, made in memory, so that
    the int8 model made now and one loaded later are compiled from the same graph. `convert`'s own graph computes the
    same values, but its nodes are ordered and named otherwise and it calls an export guard module; a second round
    trip changes nothing more. The bytes are ours, so they are read back without `load`'s safety checks."""
    buffer = io.BytesIO()
    save(reference, example, buffer)
    buffer.seek(0)
    with quiet():
        return torch.export.load(buffer).module()


def load(path: str | Path, *, trust: bool = False) -> fx.GraphModule:
    """The saved reference graph, loaded without running code from the file (unless trusted). Its
    quantize/dequantize ops are registered by torchao's PT2E modules, which a fresh process has not imported yet."""
    from kdscope.core.export_archive import load_exported_module

    _torchao()
    with quiet():
        reference = load_exported_module(path, trust=trust)
    check_weight_range(reference, path)
    return reference


def check_weight_range(reference: fx.GraphModule, source: object) -> None:
    """Refuse a graph with int8 weights beyond `WEIGHT_RANGE` (an archive from an older kdscope or another tool) on a
    CPU without VNNI, where its compiled kernels would saturate and give wrong logits (see `WEIGHT_RANGE`)."""
    widest = [(node.args[4], node.args[5]) for node in reference.graph.nodes
              if node.op == "call_function" and node.target is torch.ops.quantized_decomposed.dequantize_per_channel
              .default and len(node.args) > 5 and (node.args[4] < WEIGHT_RANGE[0] or node.args[5] > WEIGHT_RANGE[1])]
    if widest and not cpu_has_vnni():
        raise ValueError(
            f"{source} holds int8 weights in [{widest[0][0]}, {widest[0][1]}], and this CPU has no VNNI (AVX512-VNNI, "
            f"AVX-VNNI or AMX): its int8 kernels sum products in int16 and would saturate, so the compiled model "
            f"would silently differ from the saved graph. Quantize the float model again with this kdscope, which "
            f"keeps weights in {list(WEIGHT_RANGE)}, or load the archive on a CPU with VNNI.")


def cpu_has_vnni() -> bool:
    """VNNI int8 dot products (AVX512-VNNI, AVX-VNNI or AMX) on this CPU (Linux flags; elsewhere taken as absent)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = set(cpuinfo.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _drop_unused_attributes(graph_module: fx.GraphModule) -> None:
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in list(graph_module.named_parameters()) + list(graph_module.named_buffers()):
        if name not in used:
            owner, _, attribute = name.rpartition(".")
            delattr(graph_module.get_submodule(owner) if owner else graph_module, attribute)


@functools.cache
def _percentile_observer_class() -> type:
    """Built on first use so that `import kdscope` does not import torchao."""
    pt2e, *_ = _torchao()

    class _PercentileObserver(pt2e.MinMaxObserver):
        """Activation range = running mean over batches of the 0.01th and 99.99th percentiles: clips rare outliers
        that would otherwise stretch the uint8 grid (the 'percentile' calibration of TensorRT and others)."""

        percentile = 99.99

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.register_buffer("batches", torch.zeros((), dtype=torch.long))

        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            if x_orig.numel() == 0:
                return x_orig
            values = x_orig.detach().float().flatten()
            if values.numel() > 1 << 20:
                values = values[:: values.numel() // (1 << 20) + 1]
            quantiles = torch.quantile(values, torch.tensor([1 - self.percentile / 100, self.percentile / 100]))
            count = int(self.batches)
            low, high = quantiles[0].to(self.min_val.dtype), quantiles[1].to(self.max_val.dtype)
            if count == 0:
                self.min_val.copy_(low)
                self.max_val.copy_(high)
            else:
                self.min_val.copy_((self.min_val * count + low) / (count + 1))
                self.max_val.copy_((self.max_val * count + high) / (count + 1))
            self.batches += 1
            return x_orig

    return _PercentileObserver
