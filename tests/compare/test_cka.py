"""CKA: streaming equals the full Gram computation for any batch split, invariances, self-similarity, stability."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdscope.compare.cka import CKAAccumulator, as_rows, gram_cka


def _features(n: int = 60, dx: int = 7, dy: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dx, generator=generator, dtype=torch.float64)
    y = x[:, :dy] @ torch.randn(dy, dy, generator=generator, dtype=torch.float64) + 0.5 * torch.randn(
        n, dy, generator=generator, dtype=torch.float64)
    return x, y


def _streamed(x: torch.Tensor, y: torch.Tensor, cuts: list[int], debiased: bool) -> float:
    accumulator = CKAAccumulator(debiased=debiased)
    edges = [0, *sorted(set(cuts)), len(x)]
    for start, stop in zip(edges, edges[1:]):
        if stop > start:
            accumulator.update(x[start:stop], y[start:stop])
    return accumulator.value()


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 59), max_size=6), debiased=st.booleans())
def test_streaming_equals_the_full_gram_computation_for_any_split(cuts, debiased):
    x, y = _features()
    assert _streamed(x, y, cuts, debiased) == pytest.approx(gram_cka(x, y, debiased=debiased), abs=1e-6)


@pytest.mark.parametrize("debiased", [True, False])
def test_merge_equals_one_pass_even_with_other_shifts(debiased):
    x, y = _features()
    x, y = x + 50.0, y - 20.0
    first = CKAAccumulator(debiased=debiased).update(x[:25], y[:25])
    second = CKAAccumulator(debiased=debiased).update(x[25:] * 1.0 + 0.0, y[25:])
    assert not torch.equal(first.shift_x, second.shift_x)
    one_pass = CKAAccumulator(debiased=debiased).update(x, y).value()
    assert first.merge(second).value() == pytest.approx(one_pass, abs=1e-9)


def test_merge_into_an_empty_accumulator():
    x, y = _features()
    assert CKAAccumulator().merge(CKAAccumulator().update(x, y)).value() == pytest.approx(
        CKAAccumulator().update(x, y).value(), abs=1e-12)


@pytest.mark.parametrize("debiased", [True, False])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling_not_to_general_invertible_maps(debiased):
    x, y = _features()
    base = CKAAccumulator(debiased=debiased).update(x, y).value()
    orthogonal, _ = torch.linalg.qr(torch.randn(7, 7, generator=torch.Generator().manual_seed(1),
                                                dtype=torch.float64))
    assert CKAAccumulator(debiased=debiased).update(3.7 * x @ orthogonal, y).value() == pytest.approx(base,
                                                                                                    abs=1e-9)
    skew = torch.diag(torch.tensor([1, 10, 0.1, 5, 1, 0.3, 2], dtype=torch.float64))
    assert abs(CKAAccumulator(debiased=debiased).update(x @ skew, y).value() - base) > 1e-3


@pytest.mark.parametrize("debiased", [True, False])
def test_a_representation_is_identical_to_itself(debiased):
    x, _ = _features()
    assert CKAAccumulator(debiased=debiased).update(x, x).value() == pytest.approx(1.0, abs=1e-12)


def test_no_nan_with_large_offsets_in_float32_features():
    x, y = _features()
    offset_x, offset_y = (x + 1e4).float(), (y - 3e4).float()
    value = CKAAccumulator().update(offset_x[:30], offset_y[:30]).update(offset_x[30:], offset_y[30:]).value()
    assert value == pytest.approx(CKAAccumulator().update(x, y).value(), abs=1e-3)


def test_rbf_cka_of_a_representation_with_itself_is_one_and_rows_are_explicit():
    x, _ = _features()
    assert gram_cka(x, x, kernel="rbf") == pytest.approx(1.0, abs=1e-12)
    maps = torch.randn(4, 3, 5, 5)
    assert as_rows(maps, "mean").shape == (4, 3) and as_rows(maps, "flatten").shape == (4, 75)
    with pytest.raises(ValueError, match="at least 4 images"):
        CKAAccumulator().update(x[:3], x[:3]).value()
    with pytest.raises(ValueError, match="one row per image"):
        CKAAccumulator().update(x[:3], x[:4])


def test_layer_grid_of_a_model_with_itself(tiny_world, trained_tiny_teacher):
    from kdscope.compare import cka_grid

    _, test_set = tiny_world
    layers = ["stem", "layer1", "layer3"]
    grid = cka_grid(trained_tiny_teacher, trained_tiny_teacher, test_set, layers, layers, batch_size=32)
    for i in range(3):
        assert grid.values[i][i] == pytest.approx(1.0, abs=1e-9)
        assert abs(grid.control[i][i]) < 0.2
    taps = {}
    with torch.no_grad(), trained_tiny_teacher.capture(layers) as captured:
        trained_tiny_teacher.logits(test_set.images())
        taps.update(captured)
    direct = CKAAccumulator().update(as_rows(taps["stem"]), as_rows(taps["layer3"])).value()
    assert grid.values[0][2] == pytest.approx(direct, abs=1e-9)
    with pytest.raises(KeyError, match="no layer"):
        cka_grid(trained_tiny_teacher, trained_tiny_teacher, test_set, ["nope"], layers)


def _reference_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool) -> float:
    """The CKA reference notebook's `cka(gram_linear(x), gram_linear(y), debiased)` with its `center_gram`
    (Kornblith et al. 2019, google-research/google-research representation_similarity), in numpy float64."""
    import numpy as np

    def center_gram(gram: np.ndarray, unbiased: bool) -> np.ndarray:
        gram = gram.copy()
        if unbiased:
            n = gram.shape[0]
            np.fill_diagonal(gram, 0)
            means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
            means -= np.sum(means) / (2 * (n - 1))
            gram -= means[:, None]
            gram -= means[None, :]
            np.fill_diagonal(gram, 0)
        else:
            means = np.mean(gram, 0, dtype=np.float64)
            means -= np.mean(means) / 2
            gram -= means[:, None]
            gram -= means[None, :]
        return gram

    a, b = x.double().numpy(), y.double().numpy()
    gram_x, gram_y = center_gram(a @ a.T, debiased), center_gram(b @ b.T, debiased)
    return float(gram_x.ravel() @ gram_y.ravel() / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y)))


@pytest.mark.parametrize("debiased", [True, False])
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e5, 1e6])
def test_a_feature_offset_changes_neither_estimator(offset, debiased):
    """The reference on centred features is the truth; gram_cka used to be NaN at 1e4 and inf at 1e5."""
    x, y = _features()
    truth = _reference_cka(x - x.mean(0), y - y.mean(0), debiased)
    assert gram_cka(x + offset, y - offset, debiased=debiased) == pytest.approx(truth, abs=1e-9)
    assert CKAAccumulator(debiased=debiased).update(x + offset, y - offset).value() == pytest.approx(truth, abs=1e-9)


def test_float32_features_with_a_large_offset_stay_in_range():
    x, y = _features()
    x32, y32 = (x + 1e6).float(), (y + 1e6).float()
    truth = _reference_cka(x32.double() - x32.double().mean(0), y32.double() - y32.double().mean(0), True)
    value = gram_cka(x32, y32)
    assert -1.0 <= value <= 1.0 and value == pytest.approx(truth, abs=1e-9)


def test_degenerate_inputs_are_errors_not_inf_or_nan():
    x, y = _features(n=10)
    with pytest.raises(ValueError, match="does not vary"):
        gram_cka(torch.ones(10, 3), y)
    with pytest.raises(ValueError, match="at least 4 images"):
        gram_cka(x[:3], y[:3])
