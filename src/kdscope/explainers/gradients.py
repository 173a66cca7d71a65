"""Gradient maps: saliency (Simonyan et al. 2014) signed, absolute and times input; deconvnet (Zeiler & Fergus
2014) and guided backprop (Springenberg et al. 2015) through backward hooks on the ReLU modules.

Guided backprop and deconvnet change only what a ReLU passes backward, so they need every ReLU to be a module they
can hook. A ReLU called as a function (F.relu, torch.relu, x.relu()) cannot be hooked; rather than silently giving
plain gradients, the forward pass is watched and such a call is an error that says where to fix it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from kdscope.core.hooks import ModuleChanges
from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation, check_explain_inputs, frozen, input_gradient, target_logits

_RELU_OPS = {torch.ops.aten.relu, torch.ops.aten.relu_}


class FunctionalReluError(TypeError):
    """The model calls ReLU as a function, which guided backprop and deconvnet cannot reach."""


def saliency(subject: Subject, x: torch.Tensor, target: torch.Tensor, *, variant: str = "gradient") -> Explanation:
    """`variant`: 'gradient' (signed d logit / d x), 'absolute' (|gradient|) or 'grad_x_input'."""
    if variant not in ("gradient", "absolute", "grad_x_input"):
        raise ValueError(f"variant must be 'gradient', 'absolute' or 'grad_x_input', got {variant!r}")
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        grad = input_gradient(subject, x, target)
    maps = {"gradient": grad, "absolute": grad.abs(), "grad_x_input": grad * x.to(grad.device)}[variant]
    return Explanation(maps, f"saliency:{variant}", subject.gradient_source, {"variant": variant})


def guided_backprop(subject: Subject, x: torch.Tensor, target: torch.Tensor) -> Explanation:
    """Backward through each ReLU passes (f > 0) * (R > 0) * R."""
    return _modified_relu_gradient(subject, x, target, "guided_backprop")


def deconvnet(subject: Subject, x: torch.Tensor, target: torch.Tensor) -> Explanation:
    """Backward through each ReLU passes (R > 0) * R, whatever the forward input was."""
    return _modified_relu_gradient(subject, x, target, "deconvnet")


def modified_relu_gradient(subject: Subject, x: torch.Tensor, target: torch.Tensor, rule: str) -> torch.Tensor:
    """d logit_target / d x with the ReLU backward rule replaced (inside an active guard; used by guided Grad-CAM)."""
    model = subject.gradient_model
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    with ModuleChanges() as changes:
        changes.no_inplace(model)
        for relu in relus:
            changes.hook(relu.register_full_backward_hook, _guided_hook if rule == "guided_backprop" else _deconv_hook)
        x = x.detach().to(subject.device).requires_grad_(True)
        logits = _logits_without_functional_relu(subject, x, relus, changes, rule)
        (grad,) = torch.autograd.grad(target_logits(logits, target).sum(), x)
        return grad


def _logits_without_functional_relu(subject: Subject, x: torch.Tensor, relus: list[nn.Module],
                                    changes: ModuleChanges, rule: str) -> torch.Tensor:
    """The forward pass, watched on every call (a Python call per operation: about 1% of a ResNet's guided backprop):
    a ReLU run outside the modules would make `rule` silently a plain gradient."""
    detector = _FunctionalReluDetector(relus, changes)
    with detector:
        logits = subject.logits(x, use_twin=True)
    if detector.calls:
        raise FunctionalReluError(
            f"{subject.name} calls ReLU as a function ({detector.calls[0]}), which {rule} cannot hook, so the "
            "result would silently be a plain gradient. Use nn.ReLU modules in the model (e.g. "
            "self.relu = nn.ReLU() and self.relu(x)), or choose the 'saliency' method.")
    return logits


def _modified_relu_gradient(subject: Subject, x: torch.Tensor, target: torch.Tensor, rule: str) -> Explanation:
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        grad = modified_relu_gradient(subject, x, target, rule)
    return Explanation(grad, rule, subject.gradient_source)


def _guided_hook(_module: nn.Module, grad_input: tuple, _grad_output: tuple) -> tuple:
    return (grad_input[0].clamp(min=0),)


def _deconv_hook(_module: nn.Module, _grad_input: tuple, grad_output: tuple) -> tuple:
    return (grad_output[0].clamp(min=0),)


class _FunctionalReluDetector(TorchDispatchMode):
    """Records ReLU operations run outside the model's nn.ReLU modules during a forward pass: F.relu, x.relu(), or
    the aten.relu calls of an exported graph (an int8 Subject's twin), all of which reach the dispatcher. Its
    module hooks belong to the caller's `changes`, which removes them."""

    def __init__(self, relus: list[nn.Module], changes: ModuleChanges) -> None:
        super().__init__()
        self.relus, self.changes, self.depth, self.calls = relus, changes, 0, []

    def __enter__(self) -> _FunctionalReluDetector:
        for relu in self.relus:
            self.changes.hook(relu.register_forward_pre_hook, self._enter_module)
            self.changes.hook(relu.register_forward_hook, self._leave_module)
        return super().__enter__()

    def _enter_module(self, *_args: object) -> None:
        self.depth += 1

    def _leave_module(self, *_args: object) -> None:
        self.depth -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        if func.overloadpacket in _RELU_OPS and self.depth == 0:
            self.calls.append(str(func))
        return func(*args, **(kwargs or {}))
