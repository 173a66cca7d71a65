"""Data read lazily (what the audit streams) is the data read eagerly, byte for byte, with the same validation; only
the rows asked for are read; and nothing in an .npz runs code when it is mapped."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kdscope.data import image_folder, load_dataset, npz_images, probeworld
from kdscope.data.lazy import LazyArray, npz_member


@pytest.mark.parametrize("variant", ["clean", "cue_conflict", "shortcut"])
def test_probeworld_rendered_on_demand_is_the_generated_set(variant):
    eager = probeworld(150, split="test", size=24, variant=variant, cache_dir=False)
    lazy = probeworld(150, split="test", size=24, variant=variant, cache_dir=False, lazy=True)
    assert isinstance(lazy.pixels, LazyArray) and isinstance(lazy.masks, LazyArray)
    rows = np.array([149, 3, 77, 0, 12])
    assert np.array_equal(lazy.pixels[rows], eager.pixels[rows]) and np.array_equal(lazy.masks[rows], eager.masks[rows])
    assert np.array_equal(np.asarray(lazy.pixels), eager.pixels)
    assert lazy.extras.keys() == eager.extras.keys()
    assert all(np.array_equal(lazy.extras[k], eager.extras[k]) for k in eager.extras)
    part = lazy.subset(np.arange(40, 90))
    assert isinstance(part.pixels, LazyArray)
    assert np.array_equal(part.images(), eager.subset(np.arange(40, 90)).images())
    assert np.allclose(lazy.channel_stats(), eager.channel_stats(), atol=1e-9)


def test_a_cached_probeworld_set_is_mapped_not_read(tmp_path):
    eager = probeworld(120, split="test", size=20, cache_dir=tmp_path)
    lazy = probeworld(120, split="test", size=20, cache_dir=tmp_path, lazy=True)
    assert isinstance(lazy.pixels, LazyArray)
    assert np.array_equal(np.asarray(lazy.pixels), eager.pixels) and np.array_equal(lazy.masks[:], eager.masks)
    rendered = probeworld(120, split="test", size=20, cache_dir=False, lazy=True)
    assert lazy.pixels.fingerprint == rendered.pixels.fingerprint


def test_only_the_rows_asked_for_are_read():
    asked = []

    def read(index: np.ndarray) -> np.ndarray:
        asked.append(index.tolist())
        return np.repeat(index[:, None].astype(np.uint8), 4, axis=1)

    array = LazyArray(read, (1000, 4), np.uint8, source="counting")
    view = array.take(np.arange(500, 1000))
    assert asked == [] and view.shape == (500, 4)
    assert view[np.array([1, 0])].tolist() == [[245] * 4, [244] * 4]
    assert asked == [[501, 500]]
    assert view.fingerprint != array.fingerprint


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("layout", ["nchw_uint8", "nhwc_float"])
def test_npz_read_lazily_is_the_npz_read_whole(tmp_path, save, layout):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 3, 9, 7), dtype=np.uint8)
    stored = images if layout == "nchw_uint8" else images.transpose(0, 2, 3, 1) / 255.0
    save(tmp_path / "d.npz", images=stored, labels=rng.integers(0, 4, 30))
    eager, lazy = npz_images(tmp_path / "d.npz"), npz_images(tmp_path / "d.npz", lazy=True)
    assert isinstance(lazy.pixels, LazyArray) and lazy.pixels.shape == eager.pixels.shape == (30, 3, 9, 7)
    assert np.array_equal(lazy.pixels[np.array([29, 2, 5])], eager.pixels[[29, 2, 5]])
    assert np.array_equal(lazy.labels, eager.labels) and lazy.class_names == eager.class_names


def test_npz_bad_values_are_refused_before_any_batch_when_lazy(tmp_path):
    images = np.zeros((2000, 3, 4, 4))
    images[1500, 0, 0, 0] = 2.0
    np.savez(tmp_path / "bad.npz", images=images, labels=np.zeros(2000, int))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        npz_images(tmp_path / "bad.npz", lazy=True)


def test_npz_objects_are_refused_not_unpickled(tmp_path):
    np.savez(tmp_path / "o.npz", images=np.array([object()] * 2, dtype=object), labels=np.zeros(2, int))
    with pytest.raises(ValueError, match="Python objects"):
        npz_member(tmp_path / "o.npz", "images")


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_a_folder_read_lazily_is_the_folder_read_whole(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(7):
        _write(tmp_path / ("cat" if k % 2 else "dog") / f"{k}.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    (tmp_path / "cat" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.png"):
        eager = image_folder(tmp_path, size=(8, 6))
    with pytest.warns(UserWarning, match="broken.png"):
        lazy = image_folder(tmp_path, size=(8, 6), lazy=True)
    assert isinstance(lazy.pixels, LazyArray) and np.array_equal(np.asarray(lazy.pixels), eager.pixels)
    assert np.array_equal(lazy.labels, eager.labels) and lazy.description == eager.description
    _write(tmp_path / "dog" / "odd.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="size"), pytest.warns(UserWarning, match="broken.png"):
        image_folder(tmp_path, lazy=True)


def test_a_file_that_passes_its_header_check_but_cannot_be_decoded_is_named(tmp_path):
    _write(tmp_path / "a" / "ok.png", np.zeros((8, 8, 3), np.uint8))
    good = (tmp_path / "a" / "ok.png").read_bytes()
    (tmp_path / "a" / "truncated.png").write_bytes(good[:60])
    data = image_folder(tmp_path, lazy=True)
    with pytest.raises(ValueError, match="truncated.png"):
        data.images()


def test_load_dataset_passes_lazy_through(tmp_path):
    assert isinstance(load_dataset("probeworld", split="test", n=20, size=16, lazy=True).pixels, LazyArray)
    assert isinstance(load_dataset("probeworld", split="test", n=20, size=16).pixels, np.ndarray)
