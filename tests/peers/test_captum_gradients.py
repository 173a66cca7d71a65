"""captum's own test cases for plain gradients, saliency, input x gradient, guided backprop and deconvnet, run
through kdscope's `explain`.

Each case names its captum test; models, inputs and expected values are copied from pytorch/captum at commit
faac08773131888714b15709b28494ebeea7f6eb. kdscope takes one image input and one target per image, so captum's
vectors become (N, C, 1, F) images (`PeerImage`): several inputs are folded into channels, and captum's
`additional_forward_args` are bound into the model. Where captum's model sums its inputs (x + x2), the sum is the
one image: the gradient with respect to each addend equals the gradient with respect to the sum.
"""

from __future__ import annotations

import pytest
import torch

from kdscope import Subject
from kdscope.explainers import explain
from tests.peers.captum_models import (
    BasicModel,
    BasicModel2,
    BasicModel4_MultiArgs,
    BasicModel5_MultiArgs,
    BasicModel6_MultiTensor,
    BasicModel_ConvNet_One_Conv,
    BasicModel_MultiLayer,
    PeerImage,
    SoftmaxModel,
    whole,
)


def peer_subject(model: torch.nn.Module, x: torch.Tensor) -> Subject:
    """captum's inputs are not [0, 1] images: the Subject's input range is theirs. The outputs are logits as far as
    kdscope is concerned (captum explains whatever the model returns, softmax included)."""
    low, high = float(x.min()), float(x.max())
    return Subject(model, name=type(model).__name__, input_range=(low, max(high, low + 1.0)), outputs="logits")


def run(method: str, model: torch.nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    target = torch.as_tensor(target).long().expand(len(x)) if torch.as_tensor(target).ndim == 0 else target
    return explain(peer_subject(model, x), x, torch.as_tensor(target), method=method).maps


def image(*inputs: list) -> torch.Tensor:
    """captum's (N, F) inputs as one (N, len(inputs), 1, F) image, input i in channel i."""
    return torch.stack([torch.tensor(v, dtype=torch.float32) for v in inputs], 1).unsqueeze(2)


# ----------------------------------------------------------------------------------------------- plain gradient
# tests/utils/test_gradient.py (captum._utils.gradient.compute_gradients, the gradient every captum method uses).

GRADIENT_CASES = {
    # name: (model, inputs as channels, target per example, expected gradient per channel)
    "test_gradient_basic": (BasicModel(), image([[5.0]]), 0, [[[0.0]]]),
    "test_gradient_basic_2": (BasicModel(), image([[-3.0]]), 0, [[[1.0]]]),
    "test_gradient_multiinput": (BasicModel6_MultiTensor(), image([[-3.0, -5.0]], [[-5.0, 2.0]]), 0,
                                 [[[0.0, 1.0]], [[0.0, 1.0]]]),
    "test_gradient_additional_args": (PeerImage(BasicModel4_MultiArgs(), 2), image([[10.0]], [[8.0]]), 0,
                                      [[[1.0]], [[-0.5]]]),
    "test_gradient_additional_args_2": (PeerImage(BasicModel5_MultiArgs(), [3, -4]), image([[-10.0]], [[6.0]]), 0,
                                        [[[0.0]], [[4.0]]]),
    "test_gradient_target_int[0]": (BasicModel2(), image([[4.0, -1.0]], [[2.0, 5.0]]), 0,
                                    [[[1.0, 0.0]], [[-1.0, 0.0]]]),
    "test_gradient_target_int[1]": (BasicModel2(), image([[4.0, -1.0]], [[2.0, 5.0]]), 1,
                                    [[[0.0, 0.0]], [[0.0, 0.0]]]),
    "test_gradient_target_list": (BasicModel2(), image([[4.0, -1.0], [3.0, 10.0]], [[2.0, -5.0], [-2.0, 1.0]]),
                                  [0, 1], [[[[1.0, 0.0]], [[-1.0, 0.0]]], [[[0.0, 1.0]], [[0.0, -1.0]]]]),
    "test_gradient_inplace": (BasicModel_MultiLayer(inplace=True), image([[1.0, 6.0, -3.0]]), 0, [[[3.0, 3.0, 3.0]]]),
}


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
def test_captum_compute_gradients_cases(case):
    """captum tests/utils/test_gradient.py::<case>: kdscope's 'gradient' map is captum's compute_gradients. Models
    without `PeerImage` take the (N, C, 1, F) image through an adapter that passes channel c as input c."""
    model, x, target, expected = GRADIENT_CASES[case]
    model = model if isinstance(model, PeerImage) else PeerImage(model)
    grad = run("gradient", model, x, target)
    expected = torch.tensor(expected).view(len(x), -1, 1, x.shape[-1])
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("case", "target", "expected"), [
    ("test_gradient_target_tuple", [1, 1], [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]]),
    ("test_gradient_target_listtuple", [3, 1], [[[0.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]]]),
])
def test_captum_compute_gradients_tuple_targets(case, target, expected):
    """captum tests/utils/test_gradient.py::<case>: BasicModel on a (2, 2, 2) input, whose output keeps the (2, 2)
    shape; captum's targets (0, 1) and [(1, 1), (0, 1)] index it, kdscope's flat class indices 1 and [3, 1] are the
    same outputs of the flattened (N, 4) logits."""
    x = torch.tensor([[[4.0, 2.0], [-1.0, -2.0]], [[3.0, -4.0], [10.0, 5.0]]]).unsqueeze(1)
    grad = run("gradient", PeerImage(BasicModel(), inputs=whole), x, target)
    torch.testing.assert_close(grad, torch.tensor(expected).unsqueeze(1), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------- saliency, input x gradient
# captum's Saliency is |gradient| (abs=True by default), kdscope's 'saliency' method the same; InputXGradient is
# kdscope's 'grad_x_input'. captum's expected values are a hand-computed gradient (get_basic_config) or autograd.

BASIC_INPUT = [1.0, 2.0, 3.0, 0.0, -1.0, 7.0]
BASIC_GRADS = [-0.0, -0.0, -0.0, 1.0, 1.0, -0.0]


def test_captum_saliency_basic_vanilla():
    """captum tests/attr/test_saliency.py::test_saliency_test_basic_vanilla (get_basic_config): BasicModel on the
    six scalars [1, 2, 3, 0, -1, 7], which captum treats as a batch of six -> |[-0, -0, -0, 1, 1, -0]|. kdscope: a
    batch of six one-pixel images, target 0 (the scalar output)."""
    x = torch.tensor(BASIC_INPUT).view(6, 1, 1, 1)
    maps = run("saliency", PeerImage(BasicModel()), x, 0)
    torch.testing.assert_close(maps.flatten(), torch.tensor(BASIC_GRADS).abs(), atol=1e-6, rtol=0)


def test_captum_input_x_gradient_basic_vanilla():
    """captum tests/attr/test_input_x_gradient.py::test_input_x_gradient_test_basic_vanilla: the same config,
    expected gradient * input = [0, 0, 0, 0, -1, 0]."""
    x = torch.tensor(BASIC_INPUT).view(6, 1, 1, 1)
    maps = run("grad_x_input", PeerImage(BasicModel()), x, 0)
    torch.testing.assert_close(maps.flatten(), torch.tensor(BASIC_GRADS) * torch.tensor(BASIC_INPUT), atol=1e-6,
                               rtol=0)


@pytest.mark.parametrize(("config", "input1", "input2"), [
    ("get_multiargs_basic_config", [[1.5, 2.0, 34.3], [3.4, 1.2, 2.0]], [[3.0, 3.5, 23.2], [2.3, 1.2, 0.3]]),
    ("get_multiargs_basic_config_large", [[10.5, 12.0, 34.3], [43.4, 51.2, 32.0]] * 3,
     [[1.0, 3.5, 23.2], [2.3, 1.2, 0.3]] * 3),
])
@pytest.mark.parametrize(("method", "test"), [
    ("saliency", "test_saliency.py::test_saliency_test_basic_multi_variable_vanilla"),
    ("grad_x_input", "test_input_x_gradient.py::test_saliency_test_basic_multi_variable_vanilla"),
])
def test_captum_multi_argument_config(config, input1, input2, method, test):
    """captum tests/attr/<test> with captum/testing/attr/helpers/get_config_util.py::<config>: BasicModel5_MultiArgs
    with additional_forward_args ([2, 3], 1); the expected values are captum's `compute_gradients` of the unchanged
    two-input model (autograd), here taken the same way. captum runs the large config (rows repeated three times)
    only under NoiseTunnel, whose stdev 2e-7 leaves the vanilla values; kdscope has no noise tunnel, so it checks
    the vanilla values there. The inputs are the image's two channels."""
    model = BasicModel5_MultiArgs()
    inputs = [torch.tensor(v, requires_grad=True) for v in (input1, input2)]
    grads = torch.autograd.grad(model(*inputs, [2, 3], 1).sum(), inputs)
    expected = {"saliency": [g.abs() for g in grads], "grad_x_input": [g * i for g, i in zip(grads, inputs)]}[method]
    maps = run(method, PeerImage(model, [2, 3], 1), image(input1, input2), 0)
    torch.testing.assert_close(maps, torch.stack(expected, 1).unsqueeze(2).detach(), atol=1e-6, rtol=0)
    if config == "get_multiargs_basic_config_large":
        assert maps.abs().sum() > 0, "the large config has non-zero gradients ([2, -3] on the second feature)"


@pytest.mark.parametrize(("method", "test"), [
    ("saliency", "test_saliency.py::test_saliency_classification_vanilla"),
    ("grad_x_input", "test_input_x_gradient.py::test_input_x_gradient_classification_vanilla"),
])
def test_captum_classification(method, test):
    """captum tests/attr/<test>: SoftmaxModel(5, 20, 10) (random weights; captum's BaseTest seeds 1234), input
    [0, 1, 2, 3, 4], target 5; expected: autograd of the softmax output (times the input for input x gradient)."""
    torch.manual_seed(1234)
    model = SoftmaxModel(5, 20, 10)
    inp = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    model(inp)[:, 5].backward()
    expected = inp.grad.abs() if method == "saliency" else inp.grad * inp
    maps = run(method, PeerImage(model), inp.detach().view(1, 1, 1, 5), 5)
    torch.testing.assert_close(maps.view(1, 5), expected.detach(), atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------------------------- guided backprop, deconvnet
# tests/attr/test_guided_backprop.py and tests/attr/test_deconvolution.py, on BasicModel_ConvNet_One_Conv (conv ->
# ReLU module -> fc -> ReLU module), target 0.

ARANGE = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
GB_SIMPLE = [[0.0, 1.0, 1.0, 1.0], [1.0, 3.0, 3.0, 2.0], [1.0, 3.0, 3.0, 2.0], [1.0, 2.0, 2.0, 1.0]]
GB_MULTI = [[1.0, 2.0, 2.0, 1.0], [2.0, 4.0, 4.0, 2.0], [2.0, 4.0, 4.0, 2.0], [1.0, 2.0, 2.0, 1.0]]
DECONV = [[2.0, 3.0, 3.0, 1.0], [3.0, 5.0, 5.0, 2.0], [3.0, 5.0, 5.0, 2.0], [1.0, 2.0, 2.0, 1.0]]


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(("method", "test", "x", "expected"), [
    ("guided_backprop", "test_guided_backprop.py::test_simple_input_conv_gb", ARANGE, GB_SIMPLE),
    ("guided_backprop", "test_guided_backprop.py::test_simple_multi_input_conv_gb", ARANGE + 1, GB_MULTI),
    ("deconvnet", "test_deconvolution.py::test_simple_input_conv_deconv", ARANGE, DECONV),
    ("deconvnet", "test_deconvolution.py::test_simple_multi_input_conv_deconv", ARANGE + 1, DECONV),
], ids=["gb", "gb_multi_input", "deconv", "deconv_multi_input"])
def test_captum_modified_relu_conv_cases(method, test, x, expected, inplace):
    """captum tests/attr/<test>: input arange(16) as a 4x4 image (the multi-input cases: arange(16) + ones, which
    captum's model sums, as one image; captum's expected map is the same for both addends). captum runs the model
    with out-of-place ReLUs; the in-place variant checks kdscope's rule hooks still see every ReLU."""
    maps = run(method, BasicModel_ConvNet_One_Conv(inplace=inplace), x, 0)
    torch.testing.assert_close(maps, torch.tensor(expected).view(1, 1, 4, 4), atol=1e-6, rtol=0)


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize(("method", "test"), [
    ("guided_backprop", "test_guided_backprop.py::test_gb_matching"),
    ("deconvnet", "test_deconvolution.py::test_deconv_matching"),
])
def test_captum_matching_cases(method, test):
    """captum tests/attr/<test>: input 100 * randn(1, 1, 4, 4), drawn after building the model under BaseTest's
    seed 1234, every output class as target; captum checks its neuron attribution at relu2 against its input
    attribution. Here kdscope's map is checked against captum's own GuidedBackprop / Deconvolution, class by class.
    That draw leaves every ReLU of the model off (all maps 0), so its absolute value, which switches them on, is
    checked too."""
    from captum.attr import Deconvolution, GuidedBackprop

    torch.manual_seed(1234)
    net = BasicModel_ConvNet_One_Conv()
    drawn = 100.0 * torch.randn(1, 1, 4, 4)
    peer = {"guided_backprop": GuidedBackprop, "deconvnet": Deconvolution}[method](net)
    for x in (drawn, drawn.abs()):
        for target in range(4):
            expected = peer.attribute(x.clone().requires_grad_(), target=target)
            torch.testing.assert_close(run(method, net, x, target), expected, atol=1e-5, rtol=1e-6)
    assert bool(net(drawn.abs()).gt(0).all()) and not bool(net(drawn).gt(0).any())
