"""Which channels must be removed together: a torch.fx trace groups every layer that shares a channel axis.

A group starts at the layers that produce channels (Conv2d, Linear), follows them through BatchNorm, activations,
pooling and flattening of 1x1 maps, and merges at residual additions, so a ResNet's residual stream (stem, every
block's last conv and projection shortcut) is one group. Groups that touch the input, the output, a grouped
convolution or an operation the tracer does not know are left whole: pruning them could change the result.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

_PASS_THROUGH_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
                         nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout)
_PASS_THROUGH_FUNCTIONS = (F.relu, torch.relu, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout)
_ADDS = (operator.add, torch.add, operator.iadd)


@dataclass
class ChannelGroup:
    """Layers whose channel axis is shared: producers' outputs, norms' features, consumers' inputs."""

    producers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    prunable: bool = True
    channels: int = 0


def channel_groups(model: nn.Module, example: torch.Tensor) -> list[ChannelGroup]:
    """Trace `model` on `example` and return its channel groups (prunable or not), in trace order."""
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as error:
        raise ValueError(f"structured pruning needs a model torch.fx can trace ({type(error).__name__}: {error})"
                         ) from error
    with torch.no_grad():
        ShapeProp(graph_module).propagate(example)
    tracer = _GroupTracer(dict(graph_module.named_modules()))
    for node in graph_module.graph.nodes:
        tracer.visit(node)
    return tracer.groups()


class _GroupTracer:
    """Union-find over channel spaces, filled node by node."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
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

    def visit(self, node: fx.Node) -> None:
        inputs = [arg for arg in node.all_input_nodes if arg in self.space]
        shape = _shape(node)
        if node.op == "placeholder":
            self.space[node] = self.new_space(shape[1] if shape and len(shape) > 1 else 0, prunable=False)
        elif node.op == "call_module":
            self.visit_module(node, self.modules[node.target], inputs, shape)
        elif node.op == "call_function" and node.target in _ADDS and len(inputs) == 2:
            self.space[node] = self.union(self.space[inputs[0]], self.space[inputs[1]])
        elif node.op in ("call_function", "call_method") and _passes_channels(node) and len(inputs) == 1:
            self.space[node] = self.space[inputs[0]]
        elif node.op in ("call_function", "call_method") and node.target in (torch.flatten, "flatten", "view"):
            self.flatten(node, inputs)
        else:
            for arg in inputs:
                self.freeze(arg)
            if node.op != "output" and shape and len(shape) > 1:
                self.space[node] = self.new_space(shape[1], prunable=False)

    def visit_module(self, node: fx.Node, module: nn.Module, inputs: list[fx.Node], shape: tuple | None) -> None:
        source = inputs[0] if len(inputs) == 1 else None
        if isinstance(module, nn.Conv2d) and module.groups == 1 and source is not None:
            self.info[self.find(self.space[source])].consumers.append(node.target)
            self.space[node] = self.new_space(module.out_channels, producer=node.target)
        elif isinstance(module, nn.Linear) and source is not None and len(_shape(source) or ()) == 2:
            self.info[self.find(self.space[source])].consumers.append(node.target)
            self.space[node] = self.new_space(module.out_features, producer=node.target)
        elif isinstance(module, nn.BatchNorm2d) and source is not None:
            self.space[node] = self.space[source]
            self.info[self.find(self.space[source])].norms.append(node.target)
        elif isinstance(module, _PASS_THROUGH_MODULES) and source is not None:
            self.space[node] = self.space[source]
        elif isinstance(module, nn.Flatten):
            self.flatten(node, inputs)
        else:
            for arg in inputs:
                self.freeze(arg)
            self.space[node] = self.new_space(shape[1] if shape and len(shape) > 1 else 0, prunable=False)

    def flatten(self, node: fx.Node, inputs: list[fx.Node]) -> None:
        """Flattening keeps the channel axis only when the spatial size is 1x1 (after global pooling)."""
        source_shape = _shape(inputs[0]) if len(inputs) == 1 else None
        if source_shape is not None and len(source_shape) == 4 and source_shape[2] == source_shape[3] == 1:
            self.space[node] = self.space[inputs[0]]
        else:
            for arg in inputs:
                self.freeze(arg)
            self.space[node] = self.new_space(0, prunable=False)

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


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _passes_channels(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _PASS_THROUGH_FUNCTIONS
    return node.target in ("relu", "relu_", "contiguous", "clone")
