"""ProbeWorld's options for positive controls (SPEC §12): super-classes, a labelled fraction, label noise and a
transfer split, each exact in its counts and leaving the scenes it keeps byte-identical."""

import hashlib

import numpy as np
import pytest

from kdscope.data.probeworld import CLASS_NAMES, SUPERCLASSES, ProbeWorldSpec, _scene, generate, probeworld


def _world(**options):
    return generate(ProbeWorldSpec(n=400, size=16, seed=3, **options))


@pytest.mark.parametrize("fraction, noise", [(0.1, 0.0), (0.25, 0.2), (0.05, 0.5)])
def test_labelled_fraction_and_noise_counts_are_exact(fraction, noise):
    full = _world()
    part = _world(labelled_fraction=fraction, label_noise=noise)
    assert len(part) == round(400 * fraction)
    true = part.extras["true_labels"]
    assert int((part.labels != true).sum()) == round(len(part) * noise)
    assert np.bincount(true, minlength=10).max() - np.bincount(true, minlength=10).min() <= 1  # stratified
    kept = {hashlib.sha256(image.tobytes()).hexdigest(): label for image, label in zip(full.pixels, full.labels)}
    for image, label in zip(part.pixels, true):  # each kept image is a scene of the full split, byte for byte
        assert kept[hashlib.sha256(image.tobytes()).hexdigest()] == label


def test_noisy_labels_are_always_another_class():
    part = _world(labelled_fraction=0.5, label_noise=1.0)
    assert (part.labels != part.extras["true_labels"]).all()
    assert part.labels.min() >= 0 and part.labels.max() < len(CLASS_NAMES)


def test_lazy_labelled_part_renders_the_same_bytes():
    eager = _world(labelled_fraction=0.2, label_noise=0.1)
    lazy = probeworld(400, size=16, seed=3, labelled_fraction=0.2, label_noise=0.1, cache_dir=False, lazy=True)
    assert np.array_equal(lazy.pixels[:], eager.pixels) and np.array_equal(lazy.labels, eager.labels)


def test_variants_of_the_labelled_part_keep_its_scenes_and_noisy_labels():
    clean = _world(labelled_fraction=0.3, label_noise=0.2)
    shifted = _world(labelled_fraction=0.3, label_noise=0.2, variant="colour_shift")
    assert np.array_equal(clean.labels, shifted.labels) and np.array_equal(clean.masks, shifted.masks)
    permuted = _world(labelled_fraction=0.3, label_noise=0.2, variant="random_labels")
    assert np.array_equal(clean.pixels, permuted.pixels)  # the same scenes kept, whatever their labels


def test_transfer_split_is_disjoint_from_train_and_test():
    digest = {split: {hashlib.sha256(image.tobytes()).hexdigest()
                      for image in generate(ProbeWorldSpec(n=300, size=16, split=split)).pixels}
              for split in ("train", "test", "transfer")}
    assert len(digest["transfer"]) == 300
    assert not digest["transfer"] & digest["test"] and not digest["transfer"] & digest["train"]


def test_superclasses_share_hue_and_texture_and_only_shape_separates_members():
    spec = ProbeWorldSpec(n=2000, size=16, superclasses=True, colour_rate=1.0, texture_rate=1.0)
    scene = _scene(spec)
    hue = np.arctan2(*(scene["object_rgb"][:, :2] - scene["object_rgb"][:, 2:3]).T)  # a hue angle, up to scale
    for members in SUPERCLASSES.values():
        index = [CLASS_NAMES.index(m) for m in members]
        textures = {int(t) for t in scene["texture_labels"][np.isin(scene["labels"], index)]}
        assert textures == {index[0]}
        medians = [np.median(hue[scene["labels"] == i]) for i in index]
        assert max(medians) - min(medians) < 0.3
    plain = _scene(ProbeWorldSpec(n=2000, size=16, colour_rate=1.0, texture_rate=1.0))
    assert len(set(plain["texture_labels"].tolist())) == len(CLASS_NAMES)


def test_options_off_leave_the_set_as_it_was():
    spec = ProbeWorldSpec(n=120, size=16, seed=5)
    same = ProbeWorldSpec(n=120, size=16, seed=5, superclasses=False, labelled_fraction=1.0, label_noise=0.0)
    first, second = generate(spec), generate(same)
    assert np.array_equal(first.pixels, second.pixels) and "true_labels" not in first.extras


@pytest.mark.parametrize("bad", [{"labelled_fraction": 0.0}, {"labelled_fraction": 1.5}, {"label_noise": -0.1},
                                 {"label_noise": 1.2}, {"labelled_fraction": 0.001}])
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError):
        generate(ProbeWorldSpec(n=100, size=16, **bad))
