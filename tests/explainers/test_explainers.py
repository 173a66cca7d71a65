"""Explainers against independent references: finite differences, closed forms, captum; batch == one by one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam, Occlusion
from torch import nn

from kdscope import Subject, zoo
from kdscope.core.subject import RawInputModel
from kdscope.explainers import METHODS, ActivationRuleError, explain, last_spatial_layer
from kdscope.explainers.gradcam import layer_gradcam
from tests.conftest import assert_unchanged, parameters_snapshot
from tests.module_state import assert_modules_unchanged, modules_snapshot


@pytest.fixture(scope="module")
def teacher(trained_tiny_teacher):
    return trained_tiny_teacher


@pytest.fixture(scope="module")
def batch(tiny_world):
    _, test_set = tiny_world
    return test_set.images(slice(0, 6)), test_set.targets(slice(0, 6))




def test_gradient_matches_finite_differences(teacher, batch):
    x, y = batch
    x, y = x[:2], y[:2]
    grad = explain(teacher, x, y, method="gradient").maps
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        i, c, h, w = (int(torch.randint(0, s, (1,), generator=generator)) for s in (2, 3, 16, 16))
        step = 1e-2
        up, down = x.clone(), x.clone()
        up[i, c, h, w] = min(1.0, float(x[i, c, h, w]) + step)
        down[i, c, h, w] = max(0.0, float(x[i, c, h, w]) - step)
        with torch.no_grad():
            slope = (teacher.logits(up)[i, y[i]] - teacher.logits(down)[i, y[i]]) / (up[i, c, h, w] - down[i, c, h, w])
        assert float(grad[i, c, h, w]) == pytest.approx(float(slope), rel=0.1, abs=2e-3)


def _tiny_relu_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    return model, model[1].weight.detach(), model[3].weight.detach()


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_modified_relu_rules_match_the_closed_form(method):
    model, w1, w2 = _tiny_relu_net()
    subject = Subject(model, name="tiny")
    x = torch.rand(4, 1, 2, 2)
    target = torch.tensor([0, 1, 2, 1])
    maps = explain(subject, x, target, method=method).maps.flatten(1)
    hidden = x.flatten(1) @ w1.T + model[1].bias.detach()
    for i in range(4):
        relevance = w2[target[i]]
        passed = (relevance > 0) * relevance
        if method == "guided_backprop":
            passed = passed * (hidden[i] > 0)
        torch.testing.assert_close(maps[i], passed @ w1)


def test_gradcam_matches_the_formula_and_captum(teacher, batch):
    x, y = batch
    layer = last_spatial_layer(teacher, x)
    assert layer == "layer3"
    with teacher.guard():
        ours = layer_gradcam(teacher, x, y, layer)
    module = dict(teacher.model.named_modules())[layer]
    peer = LayerGradCam(RawInputModel(teacher).eval(), module).attribute(x, target=y, relu_attributions=True)
    torch.testing.assert_close(ours, peer.detach(), atol=1e-6, rtol=1e-5)
    activation = {}
    handle = module.register_forward_hook(lambda _m, _i, out: activation.update(a=out))
    xg = x.clone().requires_grad_(True)
    score = teacher.model(teacher.normalize(xg)).gather(1, y.view(-1, 1)).sum()
    handle.remove()
    (grad,) = torch.autograd.grad(score, activation["a"])
    by_hand = F.relu((grad.mean((2, 3), keepdim=True) * activation["a"]).sum(1, keepdim=True))
    torch.testing.assert_close(ours, by_hand.detach(), atol=1e-6, rtol=1e-5)
    upsampled = explain(teacher, x, y, method="gradcam").maps
    assert upsampled.shape == (6, 1, 16, 16)


def test_occlusion_matches_captum_and_a_one_patch_loop(teacher, batch):
    x, y = batch
    ours = explain(teacher, x, y, method="occlusion", patch=4, stride=2, baseline=0.5).maps
    peer = Occlusion(RawInputModel(teacher).eval()).attribute(x, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2),
                                                           baselines=0.5, target=y)
    torch.testing.assert_close(ours.expand_as(peer), peer, atol=1e-4, rtol=1e-4)
    total, count = torch.zeros(16, 16), torch.zeros(16, 16)
    with torch.no_grad():
        clean = teacher.logits(x[:1])[0, y[0]]
        for top in range(0, 13, 2):
            for left in range(0, 13, 2):
                occluded = x[:1].clone()
                occluded[..., top:top + 4, left:left + 4] = 0.5
                total[top:top + 4, left:left + 4] += clean - teacher.logits(occluded)[0, y[0]]
                count[top:top + 4, left:left + 4] += 1
    torch.testing.assert_close(ours[0, 0], total / count, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("side", "patch", "stride"), [(30, 8, 4), (17, 4, 3), (16, 5, 5)])
def test_occlusion_covers_every_pixel_like_captum_when_the_stride_does_not_divide(teacher, side, patch, stride):
    """30x30, patch 8, stride 4 left rows and columns 28-29 at 0 (324 of 900 pixels differed from captum)."""
    generator = torch.Generator().manual_seed(side)
    x = torch.rand(2, 3, side, side, generator=generator)
    y = torch.tensor([1, 4])
    ours = explain(teacher, x, y, method="occlusion", patch=patch, stride=stride, baseline=0.5).maps
    peer = Occlusion(RawInputModel(teacher).eval()).attribute(
        x, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=0.5, target=y)
    torch.testing.assert_close(ours.expand_as(peer), peer, atol=1e-4, rtol=1e-4)
    assert bool((ours[:, :, -1, :] != 0).all()) and bool((ours[:, :, :, -1] != 0).all())


@pytest.mark.parametrize("method", sorted(m for m in METHODS if m != "gradient_shap" and
                                           not METHODS[m].can("needs_attention")))
def test_batch_equals_one_by_one_and_the_model_is_untouched(teacher, batch, method):
    """(Gradient SHAP draws its references and interpolation points per image in a batch, so it is seeded but
    not batch-invariant; it is checked for determinism instead.)"""
    x, y = batch
    teacher.model.train()
    before = parameters_snapshot(teacher.model)
    modules = modules_snapshot(teacher.model)
    try:
        params = {"occlusion": {"patch": 4, "stride": 4}, "superpixel_shap": {"permutations": 2}}.get(method, {})
        together = explain(teacher, x, y, method=method, **params).maps
        alone = torch.cat([explain(teacher, x[i:i + 1], y[i:i + 1], method=method, **params).maps
                           for i in range(len(x))])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
        assert teacher.model.training
        assert_unchanged(teacher.model, before)
        assert all(m.inplace for m in teacher.model.modules() if isinstance(m, nn.ReLU))
        assert all(p.requires_grad for p in teacher.model.parameters())
        assert_modules_unchanged(teacher.model, modules)
    finally:
        teacher.model.eval()


@pytest.mark.parametrize("method", sorted(m for m in METHODS if not METHODS[m].can("needs_attention")))
def test_no_method_leaves_a_trace_on_any_module(method):
    """Every module's __dict__ (hooks, hook flags, in-place flags, modes, tensors) is as it was, on a fresh model
    (whose first modified-ReLU pass also watches for functional ReLUs) that carries hooks of the user's own."""
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1).train()
    model.fc.register_forward_hook(lambda *args: None)
    model.layer1.register_full_backward_hook(lambda *args: None)
    subject = Subject(model, name="fresh", mean=[0.5] * 3, std=[0.25] * 3)
    x, y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 2])
    params = {"occlusion": {"patch": 4, "stride": 4}, "superpixel_shap": {"permutations": 1},
              "gradient_shap": {"samples": 2}}.get(method, {})
    before = modules_snapshot(model)
    for _ in range(2):
        explain(subject, x, y, method=method, **params)
    assert_modules_unchanged(model, before)


class FunctionalRelu(nn.Module):
    """A CNN whose ReLU is a function call: modules cannot reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def test_functional_relu_is_an_error_not_a_plain_gradient():
    subject = Subject(FunctionalRelu(), name="functional")
    x, target = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    for method in ("guided_backprop", "deconvnet", "guided_gradcam"):
        with pytest.raises(ActivationRuleError, match="nn.ReLU modules"):
            explain(subject, x, target, method=method)
    assert explain(subject, x, target, method="gradient").maps.shape == x.shape


def test_bad_inputs_are_refused(teacher, batch):
    x, y = batch
    with pytest.raises(ValueError, match="4-D NCHW"):
        explain(teacher, x[0], y[:1])
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        explain(teacher, nan, y)
    with pytest.raises(ValueError, match="target classes must lie in"):
        explain(teacher, x, y + 10)
    with pytest.raises(ValueError, match="unknown method"):
        explain(teacher, x, y, method="lime")
    linear = Subject(nn.Sequential(nn.Flatten(), nn.Linear(48, 3)), name="linear")
    with pytest.raises(ValueError, match="no module with a spatial"):
        explain(linear, torch.rand(2, 3, 4, 4), torch.tensor([0, 1]), method="gradcam")


def test_superpixel_shap_is_efficient(teacher, batch):
    """Efficiency: the values sum to f(x) - f(baseline) for every image."""
    x, y = batch
    maps = explain(teacher, x, y, method="superpixel_shap", cell=4, permutations=3).maps
    with torch.no_grad():
        expected = (teacher.logits(x) - teacher.logits(torch.full_like(x, 0.5))).gather(1, y.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(maps.sum((1, 2, 3)), expected, atol=1e-4, rtol=1e-4)


def test_gradient_shap_is_seeded(teacher, batch):
    x, y = batch
    first = explain(teacher, x, y, method="gradient_shap", samples=8, seed=1).maps
    assert torch.equal(first, explain(teacher, x, y, method="gradient_shap", samples=8, seed=1).maps)
    assert not torch.equal(first, explain(teacher, x, y, method="gradient_shap", samples=8, seed=2).maps)


def test_gradient_shap_is_exact_on_a_linear_model():
    """For a linear model and one reference r, expected gradients are w * (x - r), whatever the sampled alphas, and
    sum to f(x) - f(r)."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    subject = Subject(linear, name="linear")
    x, target = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    references = torch.rand(1, 3, 2, 2)
    maps = explain(subject, x, target, method="gradient_shap", baselines=references, samples=64).maps
    with torch.no_grad():
        expected = (linear(x) - linear(references).mean(0)).gather(1, target.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(maps.sum((1, 2, 3)), expected, atol=1e-4, rtol=1e-4)


def test_shared_normalisation_keeps_differences_between_models():
    from kdscope.explainers.display import normalize_maps

    strong, weak = torch.ones(1, 4, 4) * 2.0, torch.ones(1, 4, 4) * 0.5
    shared = normalize_maps([strong, weak])
    assert float(shared[0].max()) == pytest.approx(1.0) and float(shared[1].max()) == pytest.approx(0.25)
    separate = normalize_maps([strong, weak], shared=False)
    assert float(separate[1].max()) == pytest.approx(1.0)


def test_overlay_is_rgb_not_bgr():
    from kdscope.explainers.display import overlay

    black = torch.zeros(3, 2, 2)
    hot = overlay(black, torch.ones(2, 2), alpha=1.0)
    assert hot.shape == (2, 2, 3) and hot.dtype.name == "uint8"
    assert hot[0, 0, 0] > hot[0, 0, 2]


def test_gradcam_on_a_torchscript_module_says_why_it_cannot_run():
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1).eval()
    scripted = Subject(torch.jit.trace(model, torch.rand(2, 3, 16, 16)), name="scripted")
    with pytest.raises(ValueError, match="TorchScript modules such as scripted do not support"):
        explain(scripted, torch.rand(2, 3, 16, 16), torch.tensor([0, 1]), method="gradcam")
