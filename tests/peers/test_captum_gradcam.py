"""captum's own Grad-CAM and guided Grad-CAM test cases, run through kdscope.

Sources: pytorch/captum tests/attr/layer/test_grad_cam.py and tests/attr/test_guided_grad_cam.py at commit
faac08773131888714b15709b28494ebeea7f6eb, model BasicModel_ConvNet_One_Conv with its fixed weights, target 0.

Where kdscope's definition differs from captum's, the test compares the equivalent quantity:
- kdscope always applies the final ReLU (captum's `relu_attributions=True`; captum's default is False), so a
  captum expectation without it is compared after a ReLU;
- kdscope sums the weighted channels (captum's default `attr_dim_summation=True`);
- kdscope upsamples the map bilinearly (align_corners=False), captum's GuidedGradCam with `interpolate_mode=
  "nearest"`: guided Grad-CAM is compared as captum's guided backprop map times the bilinear upsampling of captum's
  layer Grad-CAM, both taken from captum's expected values, after checking that the same two with nearest
  upsampling give captum's guided Grad-CAM expectation.
captum's test_simple_multi_input_conv (inputs summed, layer conv1) lives in
tests/explainers/test_inplace_activations.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdscope import Subject
from kdscope.explainers import explain
from kdscope.explainers.gradcam import layer_gradcam
from tests.peers.captum_models import BasicModel_ConvNet_One_Conv, BasicModel_MultiLayer, PeerImage

ARANGE = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
TARGET = torch.tensor([0])


def subject_for(model: nn.Module, x: torch.Tensor) -> Subject:
    return Subject(model, input_range=(float(x.min()), float(x.max())), outputs="logits")


def cam(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    subject = subject_for(model, x)
    with subject.guard():
        return layer_gradcam(subject, x, TARGET, layer)


class WithInputLayer(nn.Module):
    """captum's `attribute_to_layer_input=True` at conv1 explains conv1's input, the image: an identity layer in
    front of the model has that tensor as its output, which kdscope's Grad-CAM hooks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.image, self.model = nn.Identity(), model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.image(x))


@pytest.mark.parametrize(("test", "layer", "expected"), [
    ("test_simple_input_conv", "conv1", [[11.25, 13.5], [20.25, 22.5]]),
    ("test_simple_input_conv_relu", "relu1", [[0.0, 4.0], [28.0, 32.5]]),
])
@pytest.mark.parametrize("inplace", [False, True])
def test_captum_layer_gradcam_conv_cases(test, layer, expected, inplace):
    """captum tests/attr/layer/test_grad_cam.py::<test>: arange(16) as a 4x4 image; the 2x2 map at the layer's
    resolution, all positive, so kdscope's final ReLU leaves it as captum's. The in-place variant (not in captum's
    file for these layers) checks the same numbers with ReLU(inplace=True)."""
    maps = cam(BasicModel_ConvNet_One_Conv(inplace=inplace), ARANGE, layer)
    torch.testing.assert_close(maps, torch.tensor(expected).view(1, 1, 2, 2), atol=1e-5, rtol=0)


def test_captum_layer_gradcam_conv_no_grad():
    """captum tests/attr/layer/test_grad_cam.py::test_simple_input_conv_no_grad: the model's parameters have
    requires_grad=False before the call -> the same [[11.25, 13.5], [20.25, 22.5]], flags left as they were."""
    net = BasicModel_ConvNet_One_Conv()
    for param in net.parameters():
        param.requires_grad = False
    maps = cam(net, ARANGE, "conv1")
    torch.testing.assert_close(maps, torch.tensor([[11.25, 13.5], [20.25, 22.5]]).view(1, 1, 2, 2), atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in net.parameters())


def test_captum_layer_gradcam_split_channels():
    """captum tests/attr/layer/test_grad_cam.py::test_simple_input_conv_split_channels: with
    attr_dim_summation=False captum returns each channel's weight * activation; kdscope returns their sum (then a
    ReLU), so it is compared with the channel sum of captum's expected [[-3.75, 3], [23.25, 30]] +
    [[15, 10.5], [-3, -7.5]]."""
    split = torch.tensor([[[[-3.75, 3.0], [23.25, 30.0]], [[15.0, 10.5], [-3.0, -7.5]]]])
    maps = cam(BasicModel_ConvNet_One_Conv(), ARANGE, "conv1")
    torch.testing.assert_close(maps, F.relu(split.sum(1, keepdim=True)), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("test", "relu_attributions"), [
    ("test_simple_input_conv_without_final_relu", False),
    ("test_simple_input_conv_fc_with_final_relu", True),
])
def test_captum_layer_gradcam_at_the_layer_input(test, relu_attributions):
    """captum tests/attr/layer/test_grad_cam.py::<test>: arange(16) with pixel (1, 1) set to -4, Grad-CAM of
    conv1's input (attribute_to_layer_input=True) = 0.5625 * input. captum's case without the final ReLU keeps the
    -2.25 at (1, 1); kdscope always applies the ReLU, so both compare with ReLU(0.5625 * input), which is exactly
    captum's expectation with relu_attributions=True."""
    x = ARANGE.clone()
    x[0, 0, 1, 1] = -4.0
    expected = 0.5625 * x
    if relu_attributions:
        expected[0, 0, 1, 1] = 0.0
    maps = cam(WithInputLayer(BasicModel_ConvNet_One_Conv()), x, "image")
    torch.testing.assert_close(maps, F.relu(expected), atol=1e-5, rtol=0)


def test_captum_layer_gradcam_non_conv_layer_is_refused():
    """captum tests/attr/layer/test_grad_cam.py::test_simple_input_non_conv: BasicModel_MultiLayer at linear0
    gives captum [[400.]] (a 1-D layer, no spatial positions). kdscope's Grad-CAM is defined on (N, C, H, W) feature
    maps only and says so rather than return a map."""
    subject = Subject(PeerImage(BasicModel_MultiLayer()), input_range=(0.0, 100.0), outputs="logits")
    x = torch.tensor([0.0, 100.0, 0.0]).view(1, 1, 1, 3)
    refused = r"neither a spatial \(N, C, H, W\) map nor \(N, T, D\) patch tokens"
    with pytest.raises(ValueError, match=refused), subject.guard():
        layer_gradcam(subject, x, TARGET, "model.linear0")


# ------------------------------------------------------------------------------------------------ guided Grad-CAM

GB_SIMPLE = [[0.0, 1.0, 1.0, 1.0], [1.0, 3.0, 3.0, 2.0], [1.0, 3.0, 3.0, 2.0], [1.0, 2.0, 2.0, 1.0]]
GB_MULTI = [[1.0, 2.0, 2.0, 1.0], [2.0, 4.0, 4.0, 2.0], [2.0, 4.0, 4.0, 2.0], [1.0, 2.0, 2.0, 1.0]]
GUIDED_SIMPLE = [[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 12.0, 8.0], [28.0, 84.0, 97.5, 65.0], [28.0, 56.0, 65.0, 32.5]]
GUIDED_MULTI = [[14.5, 29.0, 38.0, 19.0], [29.0, 58.0, 76.0, 38.0], [65.0, 130.0, 148.0, 74.0],
                [32.5, 65.0, 74.0, 37.0]]
CASES = {
    # test in test_guided_grad_cam.py: (inplace, image, kdscope layer, captum's guided map, guided backprop map
    # (test_guided_backprop.py), layer Grad-CAM (test_grad_cam.py))
    "test_simple_input_conv": (False, ARANGE, "relu1", GUIDED_SIMPLE, GB_SIMPLE, [[0.0, 4.0], [28.0, 32.5]]),
    "test_simple_multi_input_conv": (False, ARANGE + 1, "conv1", GUIDED_MULTI, GB_MULTI, [[14.5, 19.0], [32.5, 37.0]]),
    "test_simple_multi_input_conv_inplace": (True, ARANGE + 1, "conv1", GUIDED_MULTI, GB_MULTI,
                                             [[14.5, 19.0], [32.5, 37.0]]),
    # relu1's input (attribute_to_layer_input=True) is conv1's output.
    "test_simple_multi_input_relu_input": (True, ARANGE + 1, "conv1", GUIDED_MULTI, GB_MULTI,
                                           [[14.5, 19.0], [32.5, 37.0]]),
}


@pytest.mark.parametrize("test", list(CASES))
def test_captum_guided_gradcam_cases(test):
    """captum tests/attr/test_guided_grad_cam.py::<test> (the multi-input cases: arange(16) + ones, summed by
    captum's model, as one image). See the module docstring for the nearest -> bilinear upsampling difference."""
    inplace, x, layer, guided, gb, layer_cam = CASES[test]
    guided, gb = torch.tensor(guided).view(1, 1, 4, 4), torch.tensor(gb).view(1, 1, 4, 4)
    layer_cam = torch.tensor(layer_cam).view(1, 1, 2, 2)
    torch.testing.assert_close(gb * F.interpolate(layer_cam, size=(4, 4), mode="nearest"), guided)
    subject = subject_for(BasicModel_ConvNet_One_Conv(inplace=inplace), x)
    bilinear = F.interpolate(layer_cam, size=(4, 4), mode="bilinear", align_corners=False)
    maps = explain(subject, x, TARGET, method="guided_gradcam", layer=layer).maps
    torch.testing.assert_close(maps, gb * bilinear, atol=1e-5, rtol=0)
    maps = explain(subject, x, TARGET, method="gradcam", layer=layer).maps
    torch.testing.assert_close(maps, bilinear, atol=1e-5, rtol=0)
