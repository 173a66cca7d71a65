"""Layer selection on architectures we did not write: HuggingFace ViT (square and non-square inputs), ResNet,
ConvNeXt and MobileNetV2 built offline from tiny configs with random weights. ViT Grad-CAM is checked against the
formula computed by hand on the hooked tokens (what pytorch-grad-cam's users do with a `reshape_transform`)."""

import pytest
import torch
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    MobileNetV2Config,
    MobileNetV2ForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

from kdscope import Subject, explain
from kdscope.core.layers import TokenLayout, check_layer, survey
from kdscope.explainers import ActivationRuleError
from kdscope.explainers.gradcam import layer_gradcam
from kdscope.explainers.layers import gradcam_layer, representation_layers
from tests.module_state import assert_modules_unchanged, modules_snapshot


def vit(image_size: object = 32) -> Subject:
    torch.manual_seed(0)
    config = ViTConfig(image_size=image_size, patch_size=8, hidden_size=16, num_hidden_layers=3,
                       num_attention_heads=2, intermediate_size=32, num_labels=5)
    return Subject(ViTForImageClassification(config).eval(), name="vit")


def cnn(kind: str) -> Subject:
    torch.manual_seed(0)
    model = {
        "resnet": lambda: ResNetForImageClassification(ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], num_labels=5)),
        "convnext": lambda: ConvNextForImageClassification(ConvNextConfig(
            hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], num_labels=5)),
        "mobilenet": lambda: MobileNetV2ForImageClassification(MobileNetV2Config(
            depth_multiplier=0.25, num_labels=5, image_size=64)),
    }[kind]()
    return Subject(model.eval(), name=kind)


X = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
Y = torch.tensor([1, 3])


@pytest.mark.parametrize(("size", "grid"), [(32, (4, 4)), ((32, 48), (4, 6))])
def test_a_vit_is_read_as_tokens_with_its_class_token_and_grid(size, grid):
    subject = vit(size)
    x = torch.rand(2, 3, 32, 48 if isinstance(size, tuple) else 32)
    found = survey(subject, x)
    assert found.kind == "tokens" and found.token_layout() == TokenLayout(1, grid)
    assert representation_layers(subject, x) == ["vit.layers.0", "vit.layers.1", "vit.layers.2"]
    assert gradcam_layer(subject, x) == "vit.layers.2.layernorm_before"
    assert explain(subject, x, Y, method="gradcam").maps.shape == (2, 1, *x.shape[2:])


def test_vit_gradcam_is_the_formula_on_the_patch_tokens():
    subject, x = vit(), torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    layer = "vit.layers.2.layernorm_before"
    before = modules_snapshot(subject.model)
    with subject.guard():
        ours = layer_gradcam(subject, x, Y, layer)
    assert_modules_unchanged(subject.model, before)
    kept = {}
    handle = subject.model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: kept.update(a=out))
    logits = subject.model(x).logits
    handle.remove()
    (grad,) = torch.autograd.grad(logits.gather(1, Y[:, None]).sum(), kept["a"])
    to_grid = lambda t: t[:, 1:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)  # noqa: E731 - the reshape_transform
    activation, grad = to_grid(kept["a"]), to_grid(grad)
    expected = torch.relu((grad.mean((2, 3), keepdim=True) * activation).sum(1, keepdim=True))
    torch.testing.assert_close(ours, expected.detach(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("kind", "layer", "taps"), [
    ("resnet", "resnet.encoder.stages.3", [f"resnet.encoder.stages.{i}" for i in range(4)]),
    ("convnext", "convnext.encoder.stages.3", [f"convnext.encoder.stages.{i}" for i in range(4)]),
    ("mobilenet", "mobilenet_v2.conv_1x1",
     ["mobilenet_v2.conv_stem", "mobilenet_v2.layer.5", "mobilenet_v2.layer.10", "mobilenet_v2.conv_1x1"]),
])
def test_cnns_are_tapped_at_their_stages_and_explained_at_their_last_map(kind, layer, taps):
    """ConvNeXt's channel-last (N, H, W, C) Linear outputs are never taken for feature maps."""
    subject = cnn(kind)
    assert survey(subject, X).kind == "spatial"
    assert gradcam_layer(subject, X) == layer
    assert representation_layers(subject, X) == taps
    assert explain(subject, X, Y, method="gradcam").maps.shape == (2, 1, 64, 64)


def test_a_named_layer_that_cannot_serve_is_refused_with_the_candidates():
    subject = vit()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"outputs shape \(1, 5\).*candidates: \['vit.layers"):
        check_layer(subject, x, "classifier")
    with pytest.raises(KeyError, match="no layer 'vit.nope'"):
        check_layer(subject, x, "vit.nope")
    subject.model.spare = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="'spare' of vit is not reached by the forward pass"):
        check_layer(subject, x, "spare")


@pytest.mark.parametrize("kind", ["vit", "convnext", "mobilenet"])
def test_guided_backprop_refuses_gelu_relu6_and_attention(kind):
    subject = vit() if kind == "vit" else cnn(kind)
    x = X[:, :, :32, :32] if kind == "vit" else X
    with pytest.raises(ActivationRuleError, match="no rule for"):
        explain(subject, x, Y, method="guided_backprop")


def test_hf_resnet_uses_relu_modules_so_guided_backprop_runs():
    maps = explain(cnn("resnet"), X, Y, method="guided_backprop").maps
    plain = explain(cnn("resnet"), X, Y, method="gradient").maps
    assert maps.shape == plain.shape and not torch.allclose(maps, plain)
