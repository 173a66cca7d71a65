"""The statistics' accumulators: merging the accumulators of two halves of the images equals one pass over all of
them, for any split; the CKA grid's control pairs the images by one permutation of all of them, streamed or not;
bad input is refused with the fix."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdscope.compare.cams import MapAgreementAccumulator, OjhaAccumulator, closer_share
from kdscope.compare.cka import CKAAccumulator, CKAGridAccumulator, as_rows, cka_grid, shuffled_pairing
from kdscope.core.stats import bootstrap_ci

N = 24


def _flat(grid: list[list[float]]) -> list[float]:
    return [value for row in grid for value in row]


def _maps(seed: int, n: int = N) -> torch.Tensor:
    return torch.rand(n, 6, 6, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(1, N - 1), fraction=st.sampled_from([0.1, 0.2, 0.5]))
def test_map_agreement_of_two_halves_merged_is_one_pass(cut, fraction):
    a, b = _maps(0), _maps(1)
    one_pass = MapAgreementAccumulator(fraction).update(a, b).compute()
    halves = MapAgreementAccumulator(fraction).update(a[:cut], b[:cut]).merge(
        MapAgreementAccumulator(fraction).update(a[cut:], b[cut:]))
    assert halves.compute() == one_pass
    assert set(one_pass) == {"cosine", "spearman", f"top{round(fraction * 100)}_iou"}


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(1, N - 1), with_control=st.booleans())
def test_ojha_of_two_halves_merged_is_one_pass(cut, with_control):
    teacher, distilled, independent, second = (_maps(seed) for seed in range(4))
    control = second if with_control else None

    def accumulate(part: slice) -> OjhaAccumulator:
        return OjhaAccumulator().update(teacher[part], distilled[part], independent[part],
                                        None if control is None else control[part])

    one_pass = accumulate(slice(None)).compute()
    assert accumulate(slice(None, cut)).merge(accumulate(slice(cut, None))).compute() == one_pass
    assert one_pass["distilled_closer"] == bootstrap_ci(closer_share(teacher, distilled, independent))
    assert ("control_closer" in one_pass) == with_control


@settings(max_examples=10, deadline=None)
@given(cut=st.integers(4, N - 4), debiased=st.booleans())
def test_cka_grid_of_two_halves_merged_is_one_pass(cut, debiased):
    generator = torch.Generator().manual_seed(0)
    first = [torch.randn(N, 5, generator=generator, dtype=torch.float64) for _ in range(2)]
    second = [f[:, :3] + 0.3 * torch.randn(N, 3, generator=generator, dtype=torch.float64) for f in first]
    pairing = shuffled_pairing(N, 0)
    paired = [s[pairing] for s in second]

    def accumulate(part: slice) -> CKAGridAccumulator:
        return CKAGridAccumulator(2, 2, debiased=debiased).update([f[part] for f in first], [s[part] for s in second],
                                                                  [p[part] for p in paired])

    values, control = accumulate(slice(None)).compute()
    merged_values, merged_control = accumulate(slice(None, cut)).merge(accumulate(slice(cut, None))).compute()
    assert _flat(merged_values) == pytest.approx(_flat(values), abs=1e-9)
    assert _flat(merged_control) == pytest.approx(_flat(control), abs=1e-9)
    assert values[0][0] == CKAAccumulator(debiased=debiased).update(first[0], second[0]).value()


def test_cka_grid_streams_the_audits_control_one_permutation_of_all_images(trained_tiny_teacher, tiny_world):
    data = tiny_world[1].subset(slice(0, 40))
    layers = ["layer1", "layer2"]
    grid = cka_grid(trained_tiny_teacher, trained_tiny_teacher, data, layers, layers, batch_size=16, seed=3)
    with torch.no_grad(), trained_tiny_teacher.capture(layers) as taps:
        trained_tiny_teacher.logits(data.images())
    rows = [as_rows(taps[name]) for name in layers]
    pairing = shuffled_pairing(len(data), 3)
    values, control = CKAGridAccumulator(2, 2).update(rows, rows, [r[pairing] for r in rows]).compute()
    assert _flat(grid.values) == pytest.approx(_flat(values), abs=1e-6)  # float32 features: batches of 16 vs 40
    assert _flat(grid.control) == pytest.approx(_flat(control), abs=1e-6)


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="same shape"):
        MapAgreementAccumulator().update(_maps(0), _maps(1, n=N - 1))
    with pytest.raises(ValueError, match="call update first"):
        MapAgreementAccumulator().compute()
    with pytest.raises(ValueError, match="cannot merge"):
        MapAgreementAccumulator(0.2).merge(MapAgreementAccumulator(0.5))
    with pytest.raises(ValueError, match="every batch or in none"):
        OjhaAccumulator().update(_maps(0), _maps(1), _maps(2)).update(_maps(0), _maps(1), _maps(2), _maps(3))
    with pytest.raises(ValueError, match="a test with its control and one without"):
        OjhaAccumulator().update(_maps(0), _maps(1), _maps(2)).merge(
            OjhaAccumulator().update(_maps(0), _maps(1), _maps(2), _maps(3)))
    with pytest.raises(ValueError, match="2 first-model layers"):
        CKAGridAccumulator(2, 1).update([torch.ones(4, 2)], [torch.ones(4, 2)], [torch.ones(4, 2)])
