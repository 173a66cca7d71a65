"""Layer selection, one mechanism for Grad-CAM's target layer and CKA's taps: which layers it picks on shapes we
know, that it leaves no hook behind, and that it refuses models it cannot hook."""

import pytest
import torch
from torch import nn

from kdscope import Subject, zoo
from kdscope.explainers.layers import hookable, last_spatial_layer, representation_layers
from tests.module_state import assert_modules_unchanged, modules_snapshot


def test_a_resnet_is_tapped_at_its_stages_and_explained_at_its_last():
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1)
    subject, x = Subject(model), torch.rand(2, 3, 16, 16)
    before = modules_snapshot(model)
    assert representation_layers(subject, x) == ["stem", "layer1", "layer2", "layer3"]
    assert last_spatial_layer(subject, x) == "layer3"
    assert_modules_unchanged(model, before)


def test_a_plain_cnn_is_tapped_inside_its_single_feature_block_evenly():
    model = zoo.build("vgg", 10, seed=0, width=4)
    subject, x = Subject(model), torch.rand(2, 3, 32, 32)
    spatial = [f"features.{name}" for name, module in model.features.named_children()]
    shapes = {}
    for name in spatial:
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, out.shape))
    model(x)
    spatial = [name for name in spatial if shapes[name][2] * shapes[name][3] > 1]
    chosen = representation_layers(subject, x)
    assert len(chosen) == 4 and chosen[0] == spatial[0] and chosen[-1] == spatial[-1]
    assert all(name in spatial for name in chosen)


def test_a_model_without_spatial_maps_has_no_grad_cam_layer_and_no_taps():
    subject = Subject(nn.Sequential(nn.Flatten(), nn.Linear(48, 3)))
    x = torch.rand(2, 3, 4, 4)
    assert representation_layers(subject, x) == []
    with pytest.raises(ValueError, match="no module with a spatial"):
        last_spatial_layer(subject, x)


def test_torchscript_models_are_not_hookable():
    scripted = torch.jit.trace(zoo.build("student", 3, seed=0, width=2).eval(), torch.rand(1, 3, 8, 8))
    assert not hookable(Subject(scripted))
    with pytest.raises(ValueError, match="TorchScript"):
        last_spatial_layer(Subject(scripted), torch.rand(1, 3, 8, 8))
