"""Guided backprop, deconvnet and guided Grad-CAM modify ReLUs only. On a model whose nonlinearities they cannot
modify they refuse, naming the modules, rather than return the plain gradient under their name; no method does."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdscope import Subject
from kdscope.explainers import METHODS, ActivationRuleError, explain

RULES = ("guided_backprop", "deconvnet", "guided_gradcam")


class SmallCNN(nn.Module):
    def __init__(self, activation: nn.Module, gate: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.act1 = nn.Conv2d(3, 6, 3, padding=1), activation
        self.conv2, self.act2 = nn.Conv2d(6, 6, 3, padding=1), type(activation)()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(6, 6, 1), nn.Sigmoid()) if gate else None
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.act1(self.conv1(x))))
        if self.gate is not None:
            h = h * self.gate(h)
        return self.fc(h.mean((2, 3)))


class TinyAttention(nn.Module):
    """Patch tokens through one softmax attention, ReLU modules elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.relu = nn.Conv2d(3, 8, 4, stride=4), nn.ReLU()
        self.qkv, self.fc = nn.Linear(8, 24), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.relu(self.embed(x)).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        attended = F.softmax(q @ k.transpose(1, 2) / 8 ** 0.5, dim=-1) @ v
        return self.fc(attended.mean(1))


X = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
Y = torch.tensor([0, 1, 3])


@pytest.mark.parametrize("activation", [nn.GELU(), nn.SiLU(), nn.Hardswish(), nn.ELU(), nn.LeakyReLU(), nn.Mish(),
                                        nn.ReLU6(), nn.PReLU()])
@pytest.mark.parametrize("method", RULES)
def test_activations_without_a_rule_are_refused_naming_the_modules(activation, method):
    with pytest.raises(ActivationRuleError, match=r"in act1.*no rule for|no rule for.*in act1"):
        explain(Subject(SmallCNN(activation)), X, Y, method=method)


@pytest.mark.parametrize("method", RULES)
def test_attention_softmax_is_refused(method):
    with pytest.raises(ActivationRuleError, match="_softmax"):
        explain(Subject(TinyAttention()), X, Y, method=method, **({"layer": "embed"} if "gradcam" in method else {}))


def test_relu_models_with_sigmoid_gates_are_explained():
    assert explain(Subject(SmallCNN(nn.ReLU(), gate=True)), X, Y, method="guided_backprop").maps.abs().sum() > 0


def test_opting_in_passes_the_plain_gradient_through_and_says_so():
    subject = Subject(SmallCNN(nn.GELU()))
    opted = explain(subject, X, Y, method="guided_backprop", other_activations="gradient")
    plain = explain(subject, X, Y, method="gradient")
    torch.testing.assert_close(opted.maps, plain.maps, rtol=0, atol=0)
    assert opted.params["other_activations"] == "gradient"
    with pytest.raises(ValueError, match="other_activations must be one of"):
        explain(subject, X, Y, method="deconvnet", other_activations="zero")


@pytest.mark.parametrize("method", sorted(m for m in METHODS if m != "gradient" and
                                           not METHODS[m].can("needs_attention")))
def test_no_method_returns_the_plain_gradient_under_another_name_on_a_gelu_model(method):
    subject = Subject(SmallCNN(nn.GELU()))
    plain = explain(subject, X, Y, method="gradient").maps
    params = {"occlusion": {"patch": 4, "stride": 4}, "superpixel_shap": {"permutations": 1}}.get(method, {})
    try:
        maps = explain(subject, X, Y, method=method, **params).maps
    except ActivationRuleError:
        assert METHODS[method].can("needs_relu_modules")
        return
    assert not METHODS[method].can("needs_relu_modules")
    for candidate in (plain,) if method == "saliency" else (plain, plain.abs()):  # saliency is |gradient| by name
        if maps.shape == candidate.shape:
            assert not torch.allclose(maps, candidate, atol=1e-6), method
