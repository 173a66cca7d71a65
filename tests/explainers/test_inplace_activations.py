"""In-place activations after a hooked layer must not change what the hook sees: the mechanism every tap and
explainer uses (`ModuleChanges.no_inplace`) switches them off for the duration of the call."""

from __future__ import annotations

import pytest
import torch

from kdscope import Subject, zoo
from kdscope.explainers.gradcam import layer_gradcam
from tests.peers.captum_models import BasicModel_ConvNet_One_Conv


@pytest.mark.parametrize("inplace", [False, True])
def test_captum_grad_cam_multi_input_conv_case(inplace):
    """captum tests/attr/layer/test_grad_cam.py::test_simple_multi_input_conv on captum's
    BasicModel_ConvNet_One_Conv: inputs arange(16) + ones (summed
    inside captum's model; here passed as one image), target 0, layer conv1 -> [[14.5, 19], [32.5, 37]].
    With in-place ReLUs the unguarded hook read [4, 13, 32.5, 37]."""
    subject = Subject(BasicModel_ConvNet_One_Conv(inplace), input_range=(0.0, 16.0))
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4) + 1
    with subject.guard():
        cam = layer_gradcam(subject, x, torch.tensor([0]), "conv1")
    assert cam.flatten().tolist() == pytest.approx([14.5, 19.0, 32.5, 37.0], abs=0.01)
    assert all(m.inplace is inplace for m in (subject.model.relu1, subject.model.relu2))


def test_a_tap_before_an_inplace_relu_keeps_the_pre_activation():
    """The zoo ResNet's stem is conv -> BatchNorm -> ReLU(inplace=True): the BatchNorm tap must keep its negative
    values, exactly as computing the stem by hand gives them."""
    model = zoo.build("resnet", 10, seed=0, width=4, blocks=1).eval()
    subject = Subject(model)
    x = torch.rand(4, 3, 16, 16)
    with subject.capture(["stem.1", "stem.2"]) as taps, torch.no_grad():
        subject.logits(x)
    with torch.no_grad():
        expected = model.stem[1](model.stem[0](x))
    assert model.stem[2].inplace
    torch.testing.assert_close(taps["stem.1"], expected)
    assert bool((taps["stem.1"] < 0).any()) and not bool((taps["stem.2"] < 0).any())
