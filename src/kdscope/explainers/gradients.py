"""Gradient maps: saliency (Simonyan et al. 2014) signed, absolute and times input; deconvnet (Zeiler & Fergus
2014) and guided backprop (Springenberg et al. 2015) through backward hooks on the ReLU modules.

Guided backprop and deconvnet change only what a ReLU passes backward, so they need every rectifier to be an
`nn.ReLU` module they can hook. A ReLU called as a function (F.relu, x.relu()) cannot be hooked, and GELU, SiLU,
Hardswish, ELU, LeakyReLU, Mish, Softplus, ReLU6/Hardtanh and attention's softmax have no guided rule: through them
the result would silently be part plain gradient (all of it on a GELU network). So the forward pass is watched at the
dispatcher and such a model is refused, naming the modules, unless the caller opts into
`other_activations="gradient"`: those activations then pass the plain gradient, which captum does without saying so.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from kdscope.core.hooks import ModuleChanges
from kdscope.core.subject import Subject
from kdscope.explainers.base import Explanation, check_explain_inputs, frozen, input_gradient, target_logits

_RELU_OPS = {torch.ops.aten.relu, torch.ops.aten.relu_}
_OTHER_ACTIVATION_OPS = {getattr(torch.ops.aten, name) for name in (
    "gelu", "gelu_", "silu", "silu_", "hardswish", "hardswish_", "elu", "elu_", "leaky_relu", "leaky_relu_", "mish",
    "mish_", "softplus", "celu", "celu_", "selu", "selu_", "_prelu_kernel", "hardtanh", "hardtanh_", "relu6",
    "relu6_", "threshold", "_softmax", "softmax")}
"""Nonlinearities that play a rectifier's role (ReLU6 and Hardtanh in MobileNets included) or attention's weighting
and have no guided backprop rule. Sigmoid and tanh gates (squeeze-excitation) stay: the methods are defined as
modifying ReLUs and leave gates alone."""
OTHER_ACTIVATIONS = ("refuse", "gradient")


class ActivationRuleError(TypeError):
    """The model has nonlinearities guided backprop and deconvnet cannot modify: functional ReLUs, GELU, SiLU, ..."""


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


def guided_backprop(subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
                    other_activations: str = "refuse") -> Explanation:
    """Backward through each ReLU passes (f > 0) * (R > 0) * R."""
    return _modified_relu_gradient(subject, x, target, "guided_backprop", other_activations)


def deconvnet(subject: Subject, x: torch.Tensor, target: torch.Tensor, *,
              other_activations: str = "refuse") -> Explanation:
    """Backward through each ReLU passes (R > 0) * R, whatever the forward input was."""
    return _modified_relu_gradient(subject, x, target, "deconvnet", other_activations)


def modified_relu_gradient(subject: Subject, x: torch.Tensor, target: torch.Tensor, rule: str,
                           other_activations: str = "refuse") -> torch.Tensor:
    """d logit_target / d x with the ReLU backward rule replaced (inside an active guard; used by guided Grad-CAM).
    `other_activations='gradient'` lets nonlinearities without a rule pass the plain gradient instead of refusing."""
    if other_activations not in OTHER_ACTIVATIONS:
        raise ValueError(f"other_activations must be one of {OTHER_ACTIVATIONS}, got {other_activations!r}")
    model = subject.gradient_model
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    with ModuleChanges() as changes:
        changes.no_inplace(model)
        for relu in relus:
            changes.hook(relu.register_full_backward_hook, _guided_hook if rule == "guided_backprop" else _deconv_hook)
        x = x.detach().to(subject.device).requires_grad_(True)
        logits = _watched_logits(subject, x, model, changes, rule, other_activations)
        (grad,) = torch.autograd.grad(target_logits(logits, target).sum(), x)
        return grad


def _watched_logits(subject: Subject, x: torch.Tensor, model: nn.Module, changes: ModuleChanges, rule: str,
                    other_activations: str) -> torch.Tensor:
    """The forward pass, watched on every call (a Python call per operation and module: about 1% of a ResNet's
    guided backprop): a ReLU outside the modules, or an activation without a rule, would make `rule` silently
    (partly) a plain gradient."""
    detector = _ActivationDetector(model, changes)
    with detector:
        logits = subject.logits(x, use_twin=True)
    functional = [call for call in detector.calls if call[0] in _RELU_OPS]
    others = [call for call in detector.calls if call[0] not in _RELU_OPS]
    if functional:
        raise ActivationRuleError(
            f"{subject.name} calls ReLU as a function ({_where(functional)}), which {rule} cannot hook, so the "
            "result would silently be a plain gradient. Use nn.ReLU modules in the model (e.g. "
            "self.relu = nn.ReLU() and self.relu(x)), or choose the 'saliency' method.")
    if others and other_activations == "refuse":
        raise ActivationRuleError(
            f"{subject.name} has nonlinearities that {rule} has no rule for ({_where(others)}): through them the "
            "result would be the plain gradient under another name. Choose 'gradient', 'gradcam' or "
            "'gradient_shap', or pass other_activations='gradient' to let them pass the plain gradient on purpose.")
    return logits


def _where(calls: list[tuple]) -> str:
    """'aten.gelu in blocks.0.mlp.act, ...': each distinct op and module, at most four."""
    distinct = list(dict.fromkeys(f"{op.__name__ if hasattr(op, '__name__') else op} in {module or 'the model'}"
                                  for op, module in calls))
    return ", ".join(distinct[:4]) + (f" and {len(distinct) - 4} more" if len(distinct) > 4 else "")


def _modified_relu_gradient(subject: Subject, x: torch.Tensor, target: torch.Tensor, rule: str,
                            other_activations: str) -> Explanation:
    target = check_explain_inputs(subject, x, target)
    with subject.guard():
        frozen(subject)
        grad = modified_relu_gradient(subject, x, target, rule, other_activations)
    return Explanation(grad, rule, subject.gradient_source, {"other_activations": other_activations})


def _guided_hook(_module: nn.Module, grad_input: tuple, _grad_output: tuple) -> tuple:
    return (grad_input[0].clamp(min=0),)


def _deconv_hook(_module: nn.Module, _grad_input: tuple, grad_output: tuple) -> tuple:
    return (grad_output[0].clamp(min=0),)


class _ActivationDetector(TorchDispatchMode):
    """Records, with the module that ran it, every ReLU operation run outside an nn.ReLU module (F.relu, x.relu(),
    an exported graph's aten.relu) and every activation without a guided rule. Its module hooks belong to the
    caller's `changes`, which removes them."""

    def __init__(self, model: nn.Module, changes: ModuleChanges) -> None:
        super().__init__()
        self.model, self.changes = model, changes
        self.stack: list[tuple[str, nn.Module]] = []
        self.calls: list[tuple[object, str]] = []

    def __enter__(self) -> _ActivationDetector:
        for name, module in self.model.named_modules():
            if isinstance(module, torch.jit.ScriptModule):
                continue
            self.changes.hook(module.register_forward_pre_hook,
                              lambda m, _i, name=name: self.stack.append((name, m)))
            self.changes.hook(module.register_forward_hook, self._leave)
        return super().__enter__()

    def _leave(self, *_args: object) -> None:
        """A forward hook: returns None, so the module's output stays what it was."""
        self.stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        packet = func.overloadpacket
        name, module = self.stack[-1] if self.stack else ("", None)
        if (packet in _RELU_OPS and not isinstance(module, nn.ReLU)) or packet in _OTHER_ACTIVATION_OPS:
            self.calls.append((packet, name))
        return func(*args, **(kwargs or {}))
