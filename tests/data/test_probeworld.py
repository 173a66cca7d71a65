import cv2
import numpy as np
import pytest

from kdscope.data import CLASS_NAMES, VARIANTS, probeworld
from kdscope.data.probeworld import ProbeWorldSpec, generate


def _spec(**kw) -> ProbeWorldSpec:
    return ProbeWorldSpec(**{"n": 60, "split": "test", **kw})


def _outside_objects(data) -> np.ndarray:
    """Pixels at least one pixel away from every object (anti-aliased edges excluded)."""
    dilated = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) for m in data.masks])
    return ~dilated.astype(bool)


def test_same_spec_gives_byte_identical_data():
    a, b = generate(_spec()), generate(_spec())
    assert a.pixels.tobytes() == b.pixels.tobytes()
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.masks, b.masks)
    assert a.pixels.tobytes() != generate(_spec(seed=1)).pixels.tobytes()
    assert a.pixels.tobytes() != generate(_spec(split="train")).pixels.tobytes()


def test_images_are_raw_float_nchw_in_unit_range():
    data = generate(_spec(size=24))
    images = data.images()
    assert images.dtype.is_floating_point and images.shape == (60, 3, 24, 24)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert set(np.unique(data.labels)) == set(range(len(CLASS_NAMES)))


def test_masks_match_drawn_objects():
    """With no noise and no clutter, pixels well inside a mask all share the object's chromaticity, and mask areas
    agree with the closed-form areas of the shapes (to half a pixel along the outline)."""
    spec = _spec(n=200, noise=0.0, distractors=0, size=48)
    data = generate(spec)
    from kdscope.data.probeworld import _sample_scene

    radius = _sample_scene(spec)["radius"]
    area_perimeter = {"circle": (np.pi * 0.85**2, 2 * np.pi * 0.85), "square": (1.44**2, 4 * 1.44),
                      "ring": (np.pi * (0.9**2 - 0.5**2), 2 * np.pi * 1.4), "bar": (1.8 * 0.6, 2 * 2.4)}
    for index in range(len(data)):
        inner = cv2.erode(data.masks[index].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rgb = data.pixels[index].astype(float)[:, inner] + 1.0
        chroma = rgb / rgb.sum(0, keepdims=True)
        assert chroma.std(1).max() < 0.03, f"image {index}: mask covers pixels that are not the object"
        name = CLASS_NAMES[data.labels[index]]
        if name in area_perimeter:
            area, perimeter = (value * radius[index] ** power for value, power in zip(area_perimeter[name], (2, 1)))
            assert abs(data.masks[index].sum() - area) < 0.5 * perimeter, name


def test_variants_show_the_same_scenes():
    """Same objects and masks in every variant; the background changes only in the unseen domain (distractors,
    drawn on top of it, stay) and, for the shortcut variant, only under the corner patch."""
    clean = generate(_spec())
    outside = _outside_objects(clean)
    unchanged_share = {"colour_shift": 1.0, "cue_conflict": 1.0, "random_labels": 1.0, "shortcut": 0.97}
    for variant in VARIANTS[1:]:
        other = generate(_spec(variant=variant))
        assert np.array_equal(other.masks, clean.masks), variant
        if variant != "random_labels":
            assert np.array_equal(other.labels, clean.labels), variant
        same_background = (other.pixels == clean.pixels).all(1)[outside].mean()
        if variant == "unseen_domain":
            assert same_background < 0.2
        else:
            assert same_background >= unchanged_share[variant] - 1e-9, variant


def test_colour_shift_rotates_object_hue_only():
    clean, shifted = generate(_spec(noise=0.0)), generate(_spec(noise=0.0, variant="colour_shift"))
    inside = clean.masks
    changed = (clean.pixels != shifted.pixels).any(1)
    assert changed[inside].mean() > 0.9
    assert not changed[_outside_objects(clean)].any()


def test_random_labels_permute_labels_and_keep_images():
    clean, permuted = generate(_spec(n=500)), generate(_spec(n=500, variant="random_labels"))
    assert clean.pixels.tobytes() == permuted.pixels.tobytes()
    assert np.array_equal(np.bincount(clean.labels), np.bincount(permuted.labels))
    assert (clean.labels != permuted.labels).mean() > 0.8


def test_cue_conflict_textures_come_from_another_class():
    data = generate(_spec(variant="cue_conflict"))
    assert (data.extras["texture_labels"] != data.labels).all()


def test_texture_rate_controls_class_correlation():
    always = generate(_spec(n=300, texture_rate=1.0)).extras["texture_labels"]
    never = generate(_spec(n=300, texture_rate=0.0))
    assert np.array_equal(always, generate(_spec(n=300)).labels)
    assert 0.03 < (never.extras["texture_labels"] == never.labels).mean() < 0.2


def test_shortcut_patch_codes_the_class_at_the_set_rate():
    from kdscope.data.probeworld import _hsv_to_rgb

    honest = generate(_spec(variant="shortcut", shortcut_rate=1.0, noise=0.0))
    assert np.array_equal(honest.extras["shortcut_labels"], honest.labels)
    colours = _hsv_to_rgb(honest.labels / 10, np.ones(len(honest)), np.ones(len(honest)))
    patch = honest.pixels[:, :, 2, 2].astype(float) / 255
    assert np.abs(patch - colours).max() < 1 / 255 + 1e-6
    lying = generate(_spec(variant="shortcut", shortcut_rate=0.0))
    assert (lying.extras["shortcut_labels"] != lying.labels).all()


def test_disk_cache_returns_identical_data(tmp_path):
    first = probeworld(40, split="test", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    second = probeworld(40, split="test", cache_dir=tmp_path)
    assert first.pixels.tobytes() == second.pixels.tobytes() and np.array_equal(first.masks, second.masks)
    probeworld(40, split="test", variant="cue_conflict", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("bad", [{"n": 0}, {"variant": "sepia"}, {"split": "val"}, {"texture_rate": 1.5},
                                 {"size": 8}])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError):
        probeworld(**{"n": 10, **bad})
