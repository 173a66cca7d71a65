"""Quantus's Model Parameter Randomisation Test (MPRT, Adebayo et al. 2018) against kdscope's sanity checks, with
Quantus itself running its own test models.

Quantus 0.6.0 (installed by the Makefile with --no-deps); its mprt.py, helpers/model/pytorch_model.py,
functions/similarity_func.py and metrics/base.py are identical to understandable-machine-intelligence-lab/Quantus
at commit 85bc29d137d8f42835dd392f5cc441ad61d6d1f1. The cases follow its tests/metrics/test_randomisation_metrics.py
(test_model_parameter_randomisation: LeNet and ConvNet1D from tests/conftest.py, Saliency through quantus.explain,
Spearman similarity, abs and normalise on, orders top_down, bottom_up and independent) and
tests/functions/test_pytorch_model.py (test_get_random_layer_generator).

What agrees exactly (1e-12): which layers are randomised (Quantus: every module with `reset_parameters`; kdscope:
convolutions, Linear and normalisation layers; the same set on these models, BatchNorm included), their order
(top_down = logits to input, cascading; bottom_up; independent = one layer at a time, input to logits), the
similarity (Spearman of |map|: Quantus's normalise_by_max is a positive scale, so it leaves the ranks alone), and the
per-layer score (Quantus's per-image scores averaged = kdscope's step mean).

What differs by design: the random weights. Quantus calls torch.manual_seed(seed + 1) before every layer's
`reset_parameters` (the global generator; layers of one shape get the same draw); kdscope draws from the same
distribution, U(+-1/sqrt(fan_in)) for weights and biases and the initial state for normalisation layers, with a
generator seeded per layer. So the score comparisons inject Quantus's draw into kdscope's pipeline, and a separate
test checks that kdscope's own draw has Quantus's (PyTorch's) distribution. Quantus's 'original' entry (the
unchanged model's maps against the given ones) has no kdscope step; it is 1 here, which the comparison relies on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torch import nn

from kdscope import Subject
from kdscope.explainers import sanity
from kdscope.explainers.sanity import (
    PASS_THRESHOLD,
    cascading_randomization,
    independent_randomization,
    randomizable_layers,
    randomize,
)

quantus = pytest.importorskip("quantus", reason="Quantus is a test peer: `make test` installs it (pip --no-deps)")
from quantus.functions.similarity_func import correlation_spearman  # noqa: E402
from quantus.helpers.model.models import ConvNet1D, LeNet  # noqa: E402
from quantus.helpers.model.pytorch_model import PyTorchModel  # noqa: E402

SEED = 42  # Quantus's default MPRT seed


class LeNetBN(nn.Module):
    """Quantus's LeNet with a BatchNorm after its first convolution, registered there: both tools order layers by
    registration (named_modules), not by execution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_1, self.bn_1 = nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6)
        self.conv_2 = nn.Conv2d(6, 16, 5)
        self.fc_1, self.fc_2, self.fc_3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn_1(self.conv_1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv_2(x)), 2)
        return self.fc_3(torch.relu(self.fc_2(torch.relu(self.fc_1(x.flatten(1))))))


class ConvNet1DImage(nn.Module):
    """Quantus's ConvNet1D (3 channels, 100 steps) on kdscope's NCHW images: a (N, 3, 1, 100) image, height 1."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ConvNet1D(n_channels=3, n_classes=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.squeeze(2))


def _case(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A model with seeded weights (Quantus's LeNet weights are trained; any fixed weights serve here), trained
    BatchNorm state away from its initial state, and 4 fixed images in [0, 1] with their targets."""
    torch.manual_seed(0)
    model, shape = {"lenet": (LeNet, (1, 28, 28)), "lenet_bn": (LeNetBN, (1, 28, 28)),
                    "convnet1d": (ConvNet1DImage, (3, 1, 100))}[name]
    model = model().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                for tensor, (low, high) in ((module.weight, (0.5, 1.5)), (module.bias, (-0.2, 0.2)),
                                            (module.running_mean, (-0.1, 0.1)), (module.running_var, (0.5, 2.0))):
                    tensor.uniform_(low, high)
    return model, torch.rand(4, *shape), torch.tensor([0, 3, 5, 9])


def _quantus_draw(model: nn.Module, names: list[str], seed: int) -> int:
    """Quantus's re-initialisation (PyTorchModel.get_random_layer_generator) in kdscope's `randomize` signature:
    each layer's draw depends only on the seed, so redrawing a fresh copy's top k layers gives Quantus's k-th
    cascading model exactly."""
    modules = dict(model.named_modules())
    for name in names:
        torch.manual_seed(seed + 1)
        modules[name].reset_parameters()
    return len(names)


def _quantus_mprt(model: nn.Module, x: torch.Tensor, y: torch.Tensor, order: str,
                  method: str = "Saliency") -> dict[str, list[float]]:
    """Quantus's MPRT as its test case runs it: captum's method through quantus.explain (channels summed),
    Spearman, abs, normalise."""
    metric = quantus.MPRT(layer_order=order, similarity_func=correlation_spearman,
                          normalise=True, abs=True, seed=SEED, disable_warnings=True)
    return metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, channel_first=True,
                  explain_func=quantus.explain, explain_func_kwargs={"method": method, "channel_first": True})


def _kdscope(run: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, monkeypatch: pytest.MonkeyPatch,
             method: str = "saliency", **order: str) -> sanity.SanityResult:
    monkeypatch.setattr(sanity, "randomize", _quantus_draw)
    return run(Subject(model, name="peer", outputs="logits"), x, y, method=method, seed=SEED, **order)


@pytest.mark.parametrize("name", ["lenet", "lenet_bn", "convnet1d"])
def test_layers_and_their_order_are_quantus(name: str) -> None:
    """The layers Quantus resets (modules with reset_parameters, BatchNorm and Conv1d included), in each order."""
    model = _case(name)[0]
    layers = randomizable_layers(model)
    quantus_model = PyTorchModel(model, channel_first=True)
    if name == "lenet_bn":
        assert layers == ["conv_1", "bn_1", "conv_2", "fc_1", "fc_2", "fc_3"]
    for order, expected in (("top_down", layers[::-1]), ("bottom_up", layers), ("independent", layers)):
        assert [n for n, _ in quantus_model.get_random_layer_generator(order=order, seed=SEED)] == expected, order


@pytest.mark.parametrize(("name", "quantus_method", "method"),
                         [("lenet_bn", "Saliency", "saliency"), ("convnet1d", "Gradient", "gradient")])
def test_cascading_scores_equal_quantus_per_layer(name: str, quantus_method: str, method: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """top_down: kdscope's step k = Quantus's score after its k-th layer, on the same random weights; both in
    [-1, 1] (what Quantus's test asserts), and the verdict is read from that same last score. The signed gradient
    of a 3-channel input checks where |.| is taken: after the channel sum, in both."""
    model, x, y = _case(name)
    scores = _quantus_mprt(model, x, y, "top_down", quantus_method)
    assert scores.pop("original") == pytest.approx([1.0] * len(x), abs=1e-12)
    result = _kdscope(cascading_randomization, model, x, y, monkeypatch, method)
    assert [s.layers[-1] for s in result.steps] == list(scores)
    for step in result.steps:
        quantus_scores = scores[step.layers[-1]]
        assert all(-1 <= s <= 1 for s in (*quantus_scores, *step.similarity["spearman_abs"]))
        assert step.similarity["spearman_abs"][0] == pytest.approx(np.mean(quantus_scores), abs=1e-12), step.layers
    assert result.verdict == ("pass" if np.mean(scores[result.steps[-1].layers[-1]]) < PASS_THRESHOLD else "fail")


@pytest.mark.parametrize("order", ["bottom_up", "independent"])
def test_bottom_up_and_independent_scores_equal_quantus(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """bottom_up (cascading from the input) and independent (one layer at a time, the rest trained), per layer."""
    model, x, y = _case("lenet_bn")
    scores = _quantus_mprt(model, x, y, order)
    del scores["original"]
    if order == "bottom_up":
        result = _kdscope(cascading_randomization, model, x, y, monkeypatch, order="bottom_up")
    else:
        result = _kdscope(independent_randomization, model, x, y, monkeypatch)
    assert [s.layers[-1] for s in result.steps] == list(scores)
    for step in result.steps:
        assert step.similarity["spearman_abs"][0] == pytest.approx(np.mean(scores[step.layers[-1]]), abs=1e-12)


@pytest.mark.parametrize("name", ["lenet_bn", "convnet1d"])
def test_kdscope_draws_from_quantus_distribution(name: str) -> None:
    """kdscope's own draw against reset_parameters layer by layer: normalisation layers in the identical initial
    state; weights and biases inside PyTorch's +-1/sqrt(fan_in) (torch's fan_in), reaching it, and alike in
    distribution (two-sample KS on the larger layers). Every layer changes, which Quantus's
    test_get_random_layer_generator means to check (its assertion compares two generator objects)."""
    model = _case(name)[0]
    ours, theirs = _case(name)[0], _case(name)[0]
    randomize(ours, randomizable_layers(ours), seed=SEED)
    _quantus_draw(theirs, randomizable_layers(theirs), seed=SEED)
    trained, ours, theirs = (dict(m.named_modules()) for m in (model, ours, theirs))
    for layer in randomizable_layers(model):
        for key, value in theirs[layer].state_dict().items():
            if key == "num_batches_tracked":
                continue
            drawn = ours[layer].state_dict()[key]
            assert not torch.equal(drawn, trained[layer].state_dict()[key]), (layer, key)
            if isinstance(theirs[layer], nn.BatchNorm2d):
                assert torch.equal(drawn, value), (layer, key)
                continue
            bound = 1 / nn.init._calculate_fan_in_and_fan_out(theirs[layer].weight)[0] ** 0.5
            assert max(float(drawn.abs().max()), float(value.abs().max())) <= bound * (1 + 1e-6), (layer, key)
            if value.numel() >= 200:
                assert float(drawn.abs().max()) > 0.95 * bound, (layer, key)
                assert ks_2samp(drawn.flatten().numpy(), value.flatten().numpy()).pvalue > 1e-3, (layer, key)
