"""captum's JIT test cases: attributions of a TorchScript (scripted or traced) model equal the module's.

Source: pytorch/captum tests/attr/test_jit.py at commit faac08773131888714b15709b28494ebeea7f6eb: for each
algorithm in JIT_SUPPORTED (Saliency, InputXGradient, GradientShap, Occlusion, ShapleyValueSampling among them,
kdscope's 'saliency', 'gradient', 'grad_x_input', 'gradient_shap', 'occlusion' and 'superpixel_shap'),
the cpu_jit_script and cpu_jit_trace modes compare the attributions of torch.jit.script(model) /
torch.jit.trace(model) with the module's. Here the model is captum's BasicModel_ConvNet_One_Conv.

Methods captum does not run under JIT (GuidedBackprop, Deconvolution, LayerGradCam) need module hooks, which
TorchScript modules do not offer: kdscope refuses them with an error that says so instead of returning a plain
gradient.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdscope import Subject
from kdscope.explainers import ActivationRuleError, explain
from tests.peers.captum_models import BasicModel_ConvNet_One_Conv

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

X = torch.cat([torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4),
               torch.arange(16, dtype=torch.float32).flip(0).view(1, 1, 4, 4) + 4]) / 20
TARGET = torch.tensor([0, 3])
PARAMS = {"occlusion": {"patch": 2, "stride": 1, "baseline": 0.0}, "gradient_shap": {"samples": 16},
          "superpixel_shap": {"cell": 2, "permutations": 4}}


def net() -> nn.Module:
    """BasicModel_ConvNet_One_Conv with conv1's bias scaled to the [0, 1] inputs (the fixed -50, -75 are for
    arange(16)), so that its ReLUs are partly on."""
    model = BasicModel_ConvNet_One_Conv().eval()
    with torch.no_grad():
        model.conv1.bias.div_(20)
    return model


def compiled(model: nn.Module, mode: str) -> nn.Module:
    return torch.jit.script(model) if mode == "script" else torch.jit.trace(model, (X,))


@pytest.mark.parametrize("mode", ["script", "trace"])
@pytest.mark.parametrize("method", ["saliency", "gradient", "grad_x_input", "occlusion", "gradient_shap",
                                    "superpixel_shap"])
def test_captum_jit_cases(method, mode):
    """captum tests/attr/test_jit.py::test_jit_cpu_jit_<mode>_*: the same maps from the module and its TorchScript
    form."""
    model = net()
    expected = explain(Subject(model, outputs="logits"), X, TARGET, method=method, **PARAMS.get(method, {})).maps
    assert expected.abs().sum() > 0
    maps = explain(Subject(compiled(model, mode), outputs="logits"), X, TARGET, method=method,
                   **PARAMS.get(method, {})).maps
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["script", "trace"])
@pytest.mark.parametrize(("method", "error"), [
    ("guided_backprop", ActivationRuleError), ("deconvnet", ActivationRuleError), ("gradcam", ValueError),
])
def test_hook_methods_refuse_torchscript(method, error, mode):
    """Not in captum's JIT_SUPPORTED: kdscope says why instead of silently computing something else."""
    subject = Subject(compiled(net(), mode), outputs="logits")
    with pytest.raises(error):
        explain(subject, X, TARGET, method=method)


def test_a_scripted_model_left_in_training_mode_runs_in_eval_mode():
    """Not a captum case (its JIT models have no dropout): a scripted model in training mode handed to a Subject
    directly (kdscope's loader calls .eval(), a user's own code may not). The Subject promises eval mode, so its
    dropout must be off: two passes agree, and agree with the module's."""
    model = nn.Sequential(net(), nn.Dropout(0.5)).eval()
    scripted = torch.jit.script(model).train()
    subject = Subject(scripted, outputs="logits")
    with torch.no_grad():
        expected = model(X)
        first, second = subject.logits(X), subject.logits(X)
    assert bool(expected.ne(0).any())
    assert torch.equal(first, second)
    torch.testing.assert_close(first, expected)
