"""captum's own occlusion test cases, run through kdscope's `explain(..., method="occlusion")`.

Source: pytorch/captum tests/attr/test_occlusion.py at commit faac08773131888714b15709b28494ebeea7f6eb (models from
captum/testing/helpers/basic_models.py), target 0, each case at each of captum's `perturbations_per_eval` values
as kdscope's `batch_size`. Both define a pixel's value as the mean, over the windows that cover it, of
f(x) - f(x with the window set to the baseline).

kdscope slides one square patch with one stride over an image; captum slides a window per input. The ports:
- captum's vectors are rows of an image whose other rows the model never reads (`by_row`), so a square patch acts
  on a read row exactly as captum's 1-D window (every patch covering the row occludes the same columns of it);
- several inputs are rows spaced at least a patch apart, one kdscope call per captum window size, each compared on
  its own input's row; per-example baselines are one kdscope call per example;
- inputs that captum's model sums (x + x2) are one image: occluding x with 0 leaves x2, so it is the sum occluded
  with x2 as the baseline image.
Not portable: windows that are not square on a 2-D input (test_simple_multi_input_conv's second call,
test_simple_multi_input_conv_diff_shapes), integer inputs (kdscope takes float32 images), and the argument
validation cases (kdscope's own validation is tested in tests/explainers).
"""

from __future__ import annotations

import pytest
import torch

from kdscope import Subject
from kdscope.explainers import explain
from tests.peers.captum_models import (
    BasicModel3,
    BasicModel_ConvNet_One_Conv,
    BasicModel_MultiLayer,
    BasicModel_MultiLayer_MultiInput,
    PeerImage,
    by_pixel,
    by_row,
)


def occlude(model, x, *, patch, stride=1, baseline=0.0, batch_sizes=(1,)) -> torch.Tensor:
    """kdscope's occlusion map of target 0 at each batch size; they must agree exactly with each other."""
    subject = Subject(model, input_range=(float(x.min()), float(x.max())), outputs="logits")
    target = torch.zeros(len(x), dtype=torch.long)
    maps = [explain(subject, x, target, method="occlusion", patch=patch, stride=stride, baseline=baseline,
                    batch_size=b).maps for b in batch_sizes]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], atol=1e-4, rtol=0)
    return maps[0]


def rows_image(rows: dict[int, list[list[float]]], height: int) -> torch.Tensor:
    """(N, 1, height, W) zeros with the given rows: {row index: one W-vector per example}."""
    first = next(iter(rows.values()))
    x = torch.zeros(len(first), 1, height, len(first[0]))
    for row, values in rows.items():
        x[:, 0, row] = torch.tensor(values)
    return x


# ------------------------------------------------------------------------------------ one vector input, 1-D windows

@pytest.mark.parametrize(("test", "inputs", "window", "stride", "baseline", "expected"), [
    ("test_simple_input", [[20.0, 50.0, 30.0]], 1, 1, 0.0, [[80.0, 200.0, 120.0]]),
    ("test_simple_input_larger_shape", [[20.0, 50.0, 30.0]], 2, 1, 10.0, [[200.0, 220.0, 240.0]]),
    ("test_simple_input_shape_with_stride", [[20.0, 50.0, 30.0]], 2, 2, 0.0, [[280.0, 280.0, 120.0]]),
    ("test_multi_sample_ablation", [[2.0, 10.0, 3.0], [20.0, 50.0, 30.0]], 1, 1, 0.0,
     [[8.0, 35.0, 12.0], [80.0, 200.0, 120.0]]),
])
def test_captum_occlusion_vector_cases(test, inputs, window, stride, baseline, expected):
    """captum tests/attr/test_occlusion.py::<test>: BasicModel_MultiLayer on (N, 3) inputs, sliding window (w,),
    strides and baseline as given (captum's baselines=tensor([10., 10., 10.]) is the value 10 everywhere). The input
    is row 0 of a (w + 1) x 3 image, so a w x w patch covers it like captum's window."""
    x = rows_image({0: inputs}, height=window + 1)
    maps = occlude(PeerImage(BasicModel_MultiLayer(), inputs=by_row(0)), x, patch=window, stride=stride,
                   baseline=baseline, batch_sizes=(1, 2, 3))
    torch.testing.assert_close(maps[:, 0, 0], torch.tensor(expected), atol=1e-4, rtol=0)


def test_captum_occlusion_simple_multi_input():
    """captum tests/attr/test_occlusion.py::test_simple_multi_input (and _0d, the same numbers): BasicModel3 on
    inputs [[-10], [3]] and [[-5], [1]], window (1,) each -> ([[0], [1]], [[0], [-1]]). Here each input is one pixel
    of a 1 x 2 image and the patch a single pixel."""
    x = torch.tensor([[-10.0, -5.0], [3.0, 1.0]]).view(2, 1, 1, 2)
    maps = occlude(PeerImage(BasicModel3(), inputs=by_pixel), x, patch=1)
    torch.testing.assert_close(maps.view(2, 2), torch.tensor([[0.0, 0.0], [1.0, -1.0]]), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------- three inputs, a window size per input

INP1 = [[23.0, 100.0, 0.0], [20.0, 50.0, 30.0]]
INP2 = [[20.0, 50.0, 30.0], [0.0, 100.0, 0.0]]
INP3 = [[0.0, 100.0, 10.0], [2.0, 10.0, 3.0]]
ROWS = (0, 3, 6)
"""The three inputs' rows: three apart, so no patch of side <= 3 covers two of them."""


def three_inputs() -> tuple[PeerImage, torch.Tensor]:
    """BasicModel_MultiLayer_MultiInput with additional_forward_args (1,): f(x1, x2, x3) = model(1 * (x1 + x2 +
    x3)); x1, x2, x3 are rows 0, 3 and 6 of a 7 x 3 image."""
    model = PeerImage(BasicModel_MultiLayer_MultiInput(), 1, inputs=by_row(*ROWS))
    return model, rows_image(dict(zip(ROWS, (INP1, INP2, INP3))), height=7)


@pytest.mark.parametrize(("which", "window", "expected"), [
    (0, 3, [[492.0, 492.0, 492.0], [400.0, 400.0, 400.0]]),
    (1, 1, [[80.0, 200.0, 120.0], [0.0, 400.0, 0.0]]),
    (2, 2, [[400.0, 420.0, 440.0], [48.0, 50.0, 52.0]]),
])
def test_captum_occlusion_multi_input_ablation_with_mask(which, window, expected):
    """captum tests/attr/test_occlusion.py::test_multi_input_ablation_with_mask: sliding windows (3,), (1,), (2,)
    on the three inputs, stride 1, baseline 0, perturbations_per_eval 1..3; expected per input as given. One kdscope
    call per window size, compared on that input's row."""
    model, x = three_inputs()
    maps = occlude(model, x, patch=window, batch_sizes=(1, 2, 3))
    torch.testing.assert_close(maps[:, 0, ROWS[which]], torch.tensor(expected), atol=1e-4, rtol=0)


@pytest.mark.parametrize(("which", "window", "stride", "expected"), [
    (0, 3, 2, [[444.0, 444.0, 444.0], [328.0, 328.0, 328.0]]),
    (1, 1, 1, [[68.0, 188.0, 108.0], [-12.0, 388.0, -12.0]]),
    (2, 2, 2, [[368.0, 368.0, 24.0], [0.0, 0.0, -12.0]]),
])
@pytest.mark.parametrize("example", [0, 1])
def test_captum_occlusion_multi_input_ablation_with_baselines(which, window, stride, expected, example):
    """captum tests/attr/test_occlusion.py::test_multi_input_ablation_with_baselines: windows (3,), (1,), (2,),
    strides (2, 1, 2), baselines tensor([[1, 4, 7], [3, 6, 9]]) (one row per example), 3.0, and tensor([[4], [6]])
    (one value per example). kdscope's baseline is one image for the batch, so each example runs alone with its
    baseline image, the three baselines in the three inputs' rows."""
    model, x = three_inputs()
    baseline = torch.zeros(1, 7, 3)
    baseline[0, ROWS[0]] = torch.tensor([[1.0, 4.0, 7.0], [3.0, 6.0, 9.0]])[example]
    baseline[0, ROWS[1]] = 3.0
    baseline[0, ROWS[2]] = torch.tensor([4.0, 6.0])[example]
    maps = occlude(model, x[example : example + 1], patch=window, stride=stride, baseline=baseline)
    torch.testing.assert_close(maps[0, 0, ROWS[which]], torch.tensor(expected[example]), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- conv net, 4x4 window

@pytest.mark.parametrize(("addend", "expected"), [("inp", 67.0), ("inp2", 13.0)])
def test_captum_occlusion_simple_multi_input_conv(addend, expected):
    """captum tests/attr/test_occlusion.py::test_simple_multi_input_conv (first call): BasicModel_ConvNet_One_Conv
    on inp = arange(16) and inp2 = ones (4x4), which it sums; window (1, 4, 4) on each, baseline 0 ->
    67 everywhere for inp, 13 for inp2, perturbations_per_eval 1..16. kdscope explains the sum arange(16) + 1 with
    a 4x4 patch: occluding inp is the sum with inp2 (ones) as baseline image, occluding inp2 the sum with inp."""
    inp, inp2 = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    baseline = (inp2 if addend == "inp" else inp)[0]
    maps = occlude(BasicModel_ConvNet_One_Conv(), inp + inp2, patch=4, baseline=baseline,
                   batch_sizes=(1, 2, 4, 8, 12, 16))
    torch.testing.assert_close(maps, torch.full((1, 1, 4, 4), expected), atol=1e-4, rtol=0)
