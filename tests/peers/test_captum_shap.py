"""captum's own gradient SHAP and Shapley value sampling test cases, run through kdscope's 'gradient_shap' and
'superpixel_shap' methods.

Sources: pytorch/captum tests/attr/test_gradient_shap.py and tests/attr/test_shapley.py at commit
faac08773131888714b15709b28494ebeea7f6eb (models from captum/testing/helpers). kdscope's gradient SHAP is captum's
GradientShap on the Subject's raw-input model, seeded by kdscope; its superpixel SHAP is captum's
ShapleyValueSampling over square superpixels shared by all channels, each pixel carrying its superpixel's value
divided by the superpixel's size, so a superpixel's value is its pixels' sum.

captum's Shapley expectations are the exact Shapley values (its tests also check them with ShapleyValues, to
0.001); its sampling runs are held to 1.0 (max abs), the tolerance kept here for kdscope's sampling runs, at
captum's number of samples. Efficiency (a map sums to f(x) - f(baseline)) holds exactly for permutation sampling
and is checked to float precision.
"""

from __future__ import annotations

import pytest
import torch

from kdscope import Subject
from kdscope.explainers import explain
from kdscope.explainers.shap import grid_superpixels
from tests.peers.captum_models import (
    BasicLinearModel,
    BasicModel2,
    BasicModel_MultiLayer,
    PeerImage,
    SoftmaxModel,
    by_pixel,
    by_row,
)

CAPTUM_SEED = 1234
"""captum's BaseTest.setUp seeds python, numpy and torch with 1234 before every test."""


def peer_subject(model: torch.nn.Module, x: torch.Tensor) -> Subject:
    low, high = float(x.min()), float(x.max())
    return Subject(model, input_range=(min(low, 0.0), max(high, 1.0)), outputs="logits")


# ------------------------------------------------------------------------------------------------- gradient SHAP

def linear_peer() -> tuple[PeerImage, BasicLinearModel]:
    """BasicLinearModel (Linear(7, 1) on cat(x1, x2)), built as captum's test builds it, right after the seed; x1
    and x2 are the first 3 and last 4 pixels of a 1 x 7 image."""
    torch.manual_seed(CAPTUM_SEED)
    model = BasicLinearModel().eval()
    return PeerImage(model, inputs=lambda x: [x[:, 0, 0, :3], x[:, 0, 0, 3:]]), model


def test_captum_gradient_shap_basic_multi_input():
    """captum tests/attr/test_gradient_shap.py::test_basic_multi_input: x1 = ones(10, 3), x2 = ones(10, 4),
    baselines zeros (20 of each), n_samples 50. captum asserts the convergence delta (mean per example below
    0.0006) and agreement with IntegratedGradients from zero baselines (0.05, max). On a linear model both are exact:
    every sample's attribution is w * (x - 0), so kdscope's map equals captum's IG to float precision and sums to
    f(x) - f(0)."""
    from captum.attr import IntegratedGradients

    model, linear = linear_peer()
    x, baselines = torch.ones(10, 1, 1, 7), torch.zeros(20, 1, 1, 7)
    subject = peer_subject(model, x)
    target = torch.zeros(10, dtype=torch.long)
    maps = explain(subject, x, target, method="gradient_shap", baselines=baselines, samples=50).maps
    ig = IntegratedGradients(linear).attribute((torch.ones(10, 3), torch.ones(10, 4)),
                                               baselines=(torch.zeros(10, 3), torch.zeros(10, 4)))
    torch.testing.assert_close(maps.view(10, 7), torch.cat(ig, 1).detach(), atol=1e-6, rtol=0)
    with torch.no_grad():
        delta = maps.sum((1, 2, 3)) - (model(x)[:, 0] - model(baselines[:10])[:, 0])
    assert float(delta.abs().max()) < 1e-5


def test_captum_gradient_shap_classification():
    """captum tests/attr/test_gradient_shap.py::test_classification: SoftmaxModel(40, 20, 10) (seed 1234), inputs
    arange(80) as (2, 40), baselines arange(160) as (4, 40), target 1, n_samples 10, stdevs 0.009. captum compares
    with IntegratedGradients whose baselines are the inputs themselves, i.e. zero attributions, to 0.05 (max), and
    asserts the mean convergence delta per example below 0.0006: the map's sum is within 0.0006 of the mean of
    f(x) - f(r) over the drawn baselines r, so within 0.0006 of the range of f(x) - f(r) over all four."""
    torch.manual_seed(CAPTUM_SEED)
    model = PeerImage(SoftmaxModel(40, 20, 10).eval())
    x = torch.arange(0.0, 80.0).reshape(2, 1, 1, 40)
    baselines = torch.arange(0.0, 160.0).reshape(4, 1, 1, 40)
    subject = Subject(model, input_range=(0.0, 159.0), outputs="logits")
    maps = explain(subject, x, torch.tensor([1, 1]), method="gradient_shap", baselines=baselines, samples=10,
                   stdev=0.009, seed=CAPTUM_SEED).maps
    assert float(maps.abs().max()) <= 0.05
    with torch.no_grad():
        differences = model(x)[:, 1:2] - model(baselines)[:, 1].view(1, 4)
    total = maps.sum((1, 2, 3))
    assert bool((total >= differences.min(1).values - 6e-4).all() and (total <= differences.max(1).values + 6e-4).all())


def test_captum_gradient_shap_basic_relu_multi_input():
    """captum tests/attr/test_gradient_shap.py::test_basic_relu_multi_input: BasicModel2, f(x1, x2) =
    ReLU(ReLU(x1) - 1 - ReLU(x2)) at (3, 1), baselines 0, n_samples 20000; captum asserts the mean convergence
    delta below 0.008 and agreement with IntegratedGradients, (1.5, -0.5), to 0.05 (max). Each sample's delta is
    +-1 (the gradient is (1, -1) for alpha > 1/2, else 0), so the mean's standard error is 1 / sqrt(20000) = 0.007:
    captum's 0.008 holds for the alphas of its seed 1234, which kdscope's seed=1234 draws identically (both from
    numpy's generator); other seeds are held to four standard errors."""
    model = PeerImage(BasicModel2(), inputs=by_pixel)
    x = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    subject = peer_subject(model, x)
    for seed, bound in ((CAPTUM_SEED, 0.008), (0, 4 / 20000 ** 0.5), (1, 4 / 20000 ** 0.5)):
        maps = explain(subject, x, torch.tensor([0]), method="gradient_shap", baselines=torch.zeros(1, 1, 1, 2),
                       samples=20000, seed=seed).maps
        torch.testing.assert_close(maps.view(2), torch.tensor([1.5, -0.5]), atol=0.05, rtol=0)
        assert abs(float(maps.sum()) - 1.0) < bound, (seed, float(maps.sum()) - 1.0)


# ----------------------------------------------------------------------------- Shapley value sampling, superpixels

def superpixel_values(model, x, *, cell, baseline=0.0, samples, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """kdscope's superpixel SHAP of target 0: (N, superpixels) values (the pixel sums per superpixel) and the map."""
    maps = explain(peer_subject(model, x), x, torch.zeros(len(x), dtype=torch.long), method="superpixel_shap",
                   cell=cell, baseline=baseline, permutations=samples, seed=seed).maps
    ids = grid_superpixels(x.shape[2], x.shape[3], cell).flatten()
    values = torch.zeros(len(x), int(ids.max()) + 1).index_add_(1, ids, maps.flatten(1))
    return values, maps


def check_efficient(model, x, maps, baseline) -> None:
    with torch.no_grad():
        change = model(x)[:, 0] - model(torch.full_like(x, baseline))[:, 0]
    torch.testing.assert_close(maps.sum((1, 2, 3)), change, atol=1e-3, rtol=1e-6)


MODEL = PeerImage(BasicModel_MultiLayer(), inputs=by_row(0))
"""BasicModel_MultiLayer on row 0 of the image, target 0."""


@pytest.mark.parametrize(("test", "inputs", "samples", "expected"), [
    ("test_simple_shapley_sampling", [[20.0, 50.0, 30.0]], 250, [[76.66666, 196.66666, 116.66666]]),
    ("test_multi_sample_shapley_sampling", [[2.0, 10.0, 3.0], [20.0, 50.0, 30.0]], 200,
     [[7.0, 32.5, 10.5], [76.66666, 196.66666, 116.66666]]),
])
def test_captum_shapley_sampling_per_feature(test, inputs, samples, expected):
    """captum tests/attr/test_shapley.py::<test> (use_future=False): no feature mask, so each of the three features
    is a player; here each is a 1 x 1 superpixel (cell 1) of a 1 x 3 image. Baseline 0, n_samples as captum's."""
    x = torch.tensor(inputs).view(len(inputs), 1, 1, 3)
    values, maps = superpixel_values(MODEL, x, cell=1, samples=samples)
    torch.testing.assert_close(values, torch.tensor(expected), atol=1.0, rtol=0)
    check_efficient(MODEL, x, maps, 0.0)


@pytest.mark.parametrize(("test", "inputs", "baseline", "expected"), [
    ("test_simple_shapley_sampling_with_mask", [[20.0, 50.0, 30.0]], 0.0, [[275.0, 115.0]]),
    ("test_simple_shapley_sampling_with_baselines", [[20.0, 50.0, 30.0]], 4.0, [[248.0, 104.0]]),
    ("test_multi_sample_shapley_sampling_with_mask", [[2.0, 10.0, 3.0], [20.0, 50.0, 30.0]], 0.0,
     [[39.5, 10.5], [275.0, 115.0]]),
])
def test_captum_shapley_sampling_with_mask(test, inputs, baseline, expected):
    """captum tests/attr/test_shapley.py::<test> (use_future=False): feature mask [[0, 0, 1]] (in the multi-sample
    case [[0, 0, 1], [1, 1, 0]], the same two groups), n_samples 100; captum's expected [[275, 275, 115]] gives each
    element its group's value. Here the input is row 0 of a 2 x 3 image cut into 2 x 2 superpixels (cell 2):
    columns 0-1 and column 2, captum's two groups; rows other than 0 are not read."""
    x = torch.zeros(len(inputs), 1, 2, 3)
    x[:, 0, 0] = torch.tensor(inputs)
    values, maps = superpixel_values(MODEL, x, cell=2, baseline=baseline, samples=100)
    torch.testing.assert_close(values, torch.tensor(expected), atol=1.0, rtol=0)
    check_efficient(MODEL, x, maps, baseline)
