"""Which channels must be removed together: a torch.export trace groups every layer that shares a channel axis.

A group starts at the layers that produce channels (Conv2d, Linear on (N, C) inputs), follows them through
BatchNorm, activations, pooling and flattening of 1x1 maps, and merges at residual additions, so a ResNet's residual
stream (stem, every block's last conv and projection shortcut) is one group. Groups that touch the input, the output,
a grouped convolution, a module called twice or an operation the tracer does not know are left whole: pruning them
could change the result. torch.export (not torch.fx's symbolic trace) reads the ATen graph, so models with
Python control flow on shapes (HuggingFace's) are traced too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import fx, nn

_aten = torch.ops.aten
_PASS_THROUGH = {_aten.relu.default, _aten.relu_.default, _aten.gelu.default, _aten.silu.default,
                 _aten.silu_.default, _aten.hardtanh.default, _aten.hardtanh_.default, _aten.leaky_relu.default,
                 _aten.leaky_relu_.default, _aten.dropout.default, _aten.clone.default}
_POOLS = {_aten.max_pool2d.default, _aten.avg_pool2d.default, _aten.adaptive_avg_pool2d.default}
_ADDS = {_aten.add.Tensor, _aten.add_.Tensor}
_FLATTENS = {_aten.flatten.using_ints, _aten.view.default, _aten.reshape.default}
_LAYERS = {_aten.conv2d.default: nn.Conv2d, _aten.linear.default: nn.Linear,
           _aten.batch_norm.default: nn.BatchNorm2d}


@dataclass
class ChannelGroup:
    """Layers whose channel axis is shared: producers' outputs, norms' features, consumers' inputs."""

    producers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    prunable: bool = True
    channels: int = 0


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """The model's ATen graph on `example` (eval mode, no gradients), each node with its traced shape."""
    try:
        with torch.no_grad():
            return torch.export.export(model, (example,)).module()
    except Exception as error:
        raise ValueError(f"structured pruning needs a model torch.export can capture ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from error


def channel_groups(model: nn.Module, example: torch.Tensor) -> list[ChannelGroup]:
    """Trace `model` on `example` and return its channel groups (prunable or not), in trace order."""
    return groups_of(model, trace(model, example))


def groups_of(model: nn.Module, traced: fx.GraphModule) -> list[ChannelGroup]:
    """The channel groups of `model`, read from its trace."""
    graph = traced.graph
    calls = Counter(_layer_name(node) for node in graph.nodes if node.target in _LAYERS)
    tracer = _GroupTracer(dict(model.named_modules()), shared={name for name, n in calls.items() if n > 1})
    for node in graph.nodes:
        tracer.visit(node)
    return tracer.groups()


def attention_layers(traced: fx.GraphModule) -> list[str]:
    """Conv2d/Linear layers inside an attention module (its class name says Attention): their output channels are
    split into heads, which a channel group cannot follow."""
    found = []
    for node in traced.graph.nodes:
        stack = [kind for _, kind in node.meta.get("nn_module_stack", {}).values()]
        kinds = [kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind)) for kind in stack]
        if node.target in (_aten.conv2d.default, _aten.linear.default) and any("Attention" in k for k in kinds):
            found.append(_layer_name(node))
    return list(dict.fromkeys(name for name in found if name))


class _GroupTracer:
    """Union-find over channel spaces, filled node by node."""

    def __init__(self, modules: dict[str, nn.Module], shared: set[str]) -> None:
        self.modules, self.shared = modules, shared
        self.parent: list[int] = []
        self.info: list[ChannelGroup] = []
        self.space: dict[fx.Node, int] = {}

    def new_space(self, channels: int, producer: str | None = None, prunable: bool = True) -> int:
        self.parent.append(len(self.parent))
        self.info.append(ChannelGroup(producers=[producer] if producer else [], prunable=prunable, channels=channels))
        return len(self.parent) - 1

    def find(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            group, other = self.info[a], self.info[b]
            group.producers += other.producers
            group.norms += other.norms
            group.consumers += other.consumers
            group.prunable = group.prunable and other.prunable and group.channels == other.channels
        return a

    def freeze(self, node: fx.Node) -> None:
        if node in self.space:
            self.info[self.find(self.space[node])].prunable = False

    def group_of(self, node: fx.Node) -> ChannelGroup:
        return self.info[self.find(self.space[node])]

    def visit(self, node: fx.Node) -> None:
        if node.op == "get_attr":  # weights and buffers: read by the layers that own them
            return
        inputs = [arg for arg in node.all_input_nodes if arg in self.space]
        source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) and node.args[0] in self.space \
            else None
        shape = _shape(node)
        if node.op == "placeholder":
            self.space[node] = self.new_space(shape[1] if shape and len(shape) > 1 else 0, prunable=False)
        elif node.target in _LAYERS and source is not None and self.visit_layer(node, source, inputs):
            return
        elif node.target in _ADDS and len(inputs) == 2 and _shape(inputs[0]) == _shape(inputs[1]) == shape:
            self.space[node] = self.union(self.space[inputs[0]], self.space[inputs[1]])
        elif node.target in _PASS_THROUGH and source is not None and inputs == [source]:
            self.space[node] = self.space[source]
        elif node.target in _POOLS and source is not None and inputs == [source] and len(shape or ()) == 4:
            self.space[node] = self.space[source]
        elif node.target in _FLATTENS and source is not None and inputs == [source] and _keeps_channels(source,
                                                                                                       shape):
            self.space[node] = self.space[source]
        else:
            for arg in inputs:
                self.freeze(arg)
            if node.op != "output" and shape and len(shape) > 1:
                self.space[node] = self.new_space(shape[1], prunable=False)

    def visit_layer(self, node: fx.Node, source: fx.Node, inputs: list[fx.Node]) -> bool:
        """Record a conv, linear or batch norm reading `source`; False when the node is not one it can follow."""
        name = _layer_name(node)
        module = self.modules.get(name)
        if not isinstance(module, _LAYERS[node.target]) or name in self.shared or inputs != [source]:
            return False
        if isinstance(module, nn.BatchNorm2d):
            self.space[node] = self.space[source]
            self.group_of(source).norms.append(name)
        elif isinstance(module, nn.Conv2d) and module.groups == 1:
            self.group_of(source).consumers.append(name)
            self.space[node] = self.new_space(module.out_channels, producer=name)
        elif isinstance(module, nn.Linear) and len(_shape(source) or ()) == 2:
            self.group_of(source).consumers.append(name)
            self.space[node] = self.new_space(module.out_features, producer=name)
        else:
            return False
        return True

    def groups(self) -> list[ChannelGroup]:
        roots = []
        for index in range(len(self.parent)):
            root = self.find(index)
            if root not in roots:
                roots.append(root)
        groups = [self.info[root] for root in roots]
        for group in groups:
            group.prunable = group.prunable and bool(group.producers) and bool(group.consumers)
        return [group for group in groups if group.producers]


def _layer_name(node: fx.Node) -> str | None:
    """The module a conv/linear/batch-norm node belongs to, read from its weight (or running mean) attribute."""
    if node.op != "call_function" or node.target not in _LAYERS:
        return None
    for index in (1, 3):
        attribute = node.args[index] if len(node.args) > index else None
        if isinstance(attribute, fx.Node) and attribute.op == "get_attr":
            return attribute.target.rpartition(".")[0]
    return None


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    value = node.meta.get("val")
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _keeps_channels(source: fx.Node, shape: tuple[int, ...] | None) -> bool:
    """Flattening keeps the channel axis only when the spatial size is 1x1 (after global pooling)."""
    source_shape = _shape(source)
    return (source_shape is not None and len(source_shape) == 4 and source_shape[2:] == (1, 1)
            and shape == source_shape[:2])
