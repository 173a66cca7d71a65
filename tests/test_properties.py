"""Property tests: storage round trips, augmentation bounds, the Subject guard, bootstrap bounds."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdscope import zoo
from kdscope.core.stats import bootstrap_ci
from kdscope.core.subject import Subject
from kdscope.data.augment import Augment
from kdscope.data.imageset import to_float, to_uint8


@settings(suppress_health_check=[HealthCheck.too_slow])  # one slow first draw on a loaded 2-core CI box is not a bug
@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(3), st.integers(1, 6), st.integers(1, 6))))
def test_uint8_float_round_trip_is_exact(pixels):
    images = to_float(pixels)
    assert images.dtype == torch.float32 and float(images.min()) >= 0 and float(images.max()) <= 1
    assert np.array_equal(to_uint8(images.numpy()), pixels)


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 5), st.integers(4, 9), st.floats(0, 0.8), st.floats(0, 0.5), st.integers(0, 3),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_augment_stays_in_the_box_and_keeps_shape(n, side, strength, hue, padding, flip, seed):
    x = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))
    before = x.clone()
    augment = Augment(strength, strength, strength, hue, min(padding, side - 1), flip)
    out = augment(x, torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.is_contiguous()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(x, before)


@settings(deadline=None, max_examples=25)
@given(st.lists(st.booleans(), min_size=1, max_size=64))
def test_guard_restores_any_pattern_of_modes(pattern):
    model = zoo.build("resnet", 10, width=2, blocks=1)
    modules = list(model.modules())
    for module, mode in zip(modules, pattern * (len(modules) // len(pattern) + 1)):
        module.training = mode
    expected = [m.training for m in modules]
    subject = Subject(model)
    subject.logits(torch.rand(1, 3, 8, 8))
    assert [m.training for m in modules] == expected


@settings(deadline=None, max_examples=30)
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-10, 10)))
def test_bootstrap_interval_lies_within_the_data(values):
    estimate, low, high = bootstrap_ci(values, resamples=200)
    assert values.min() - 1e-9 <= low <= high <= values.max() + 1e-9
    assert np.isclose(estimate, values.mean())
