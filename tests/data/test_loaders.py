import cv2
import numpy as np
import pytest

from kdscope.data import digits, image_folder, load_dataset, npz_images


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_image_folder_reads_classes_in_rgb_order(tmp_path):
    red_bgr = np.zeros((8, 8, 3), np.uint8)
    red_bgr[..., 2] = 255
    _write(tmp_path / "cat" / "a.png", red_bgr)
    _write(tmp_path / "dog" / "b.png", np.full((8, 8, 3), 40, np.uint8))
    data = image_folder(tmp_path)
    assert data.class_names == ("cat", "dog") and list(data.labels) == [0, 1]
    images = data.images()
    assert images.shape == (2, 3, 8, 8)
    assert float(images[0, 0].min()) == 1.0 and float(images[0, 2].max()) == 0.0


def test_image_folder_skips_unreadable_files_with_a_warning(tmp_path):
    _write(tmp_path / "a" / "ok.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.png"):
        data = image_folder(tmp_path)
    assert len(data) == 1


def test_image_folder_mixed_sizes_need_a_size(tmp_path):
    _write(tmp_path / "a" / "small.png", np.zeros((8, 8, 3), np.uint8))
    _write(tmp_path / "b" / "large.png", np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="size"):
        image_folder(tmp_path)
    assert image_folder(tmp_path, size=(6, 7)).pixels.shape == (2, 3, 6, 7)


def test_image_folder_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="class sub-folders"):
        image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        image_folder(tmp_path)


def test_npz_accepts_nhwc_uint8_and_float(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 9, 9, 3), dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", images=images, labels=np.array([0, 1, 2, 1, 0]))
    data = npz_images(tmp_path / "u8.npz")
    assert data.pixels.shape == (5, 3, 9, 9) and np.array_equal(data.pixels[1], images[1].transpose(2, 0, 1))
    np.savez(tmp_path / "f.npz", images=images.transpose(0, 3, 1, 2) / 255.0, labels=np.arange(5))
    assert np.array_equal(npz_images(tmp_path / "f.npz").pixels, data.pixels)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4, int), "N, H, W, C"),
        (np.full((4, 3, 8, 8), 2.0), np.zeros(4, int), r"\[0, 1\]"),
        (np.full((4, 3, 8, 8), np.nan), np.zeros(4, int), r"\[0, 1\]"),
        (np.zeros((4, 3, 8, 8), np.int32), np.zeros(4, int), "dtype"),
        (np.zeros((4, 3, 8, 8), np.uint8), np.zeros(3, int), "integer labels"),
        (np.zeros((4, 3, 8, 8), np.uint8), np.array([0, 1, -1, 0]), "negative"),
    ],
)
def test_npz_bad_input(tmp_path, images, labels, message):
    np.savez(tmp_path / "bad.npz", images=images, labels=labels)
    with pytest.raises((ValueError, TypeError), match=message):
        npz_images(tmp_path / "bad.npz")


def test_npz_labels_out_of_range_for_class_names(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 3, 4, 4), np.uint8), labels=np.array([0, 2]))
    with pytest.raises(ValueError, match="out of range"):
        npz_images(tmp_path / "d.npz", class_names=["a", "b"])
    with pytest.raises(KeyError, match="images_key"):
        npz_images(tmp_path / "d.npz", images_key="x")


def test_npz_input_file_is_not_changed(tmp_path):
    path = tmp_path / "keep.npz"
    np.savez(path, images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, 1]))
    before = path.read_bytes()
    npz_images(path).pixels[:] = 7
    assert path.read_bytes() == before


def test_digits_split_is_stratified_and_disjoint():
    train, test = digits(split="train", size=16), digits(split="test", size=16)
    assert len(train) + len(test) == 1797
    assert train.pixels.shape[1:] == (3, 16, 16)
    assert (train.pixels[:, 0] == train.pixels[:, 1]).all()
    assert np.bincount(test.labels).min() >= 40


def test_load_dataset_resolves_specs(tmp_path):
    assert load_dataset("probeworld:cue_conflict", split="test", n=12).description["variant"] == "cue_conflict"
    assert len(load_dataset("digits", split="test", n=7)) == 7
    with pytest.raises(ValueError, match="unknown data"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="variant"):
        load_dataset("digits:colour_shift")
