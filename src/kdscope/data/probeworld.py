"""ProbeWorld: seeded procedural shapes with ground-truth masks and controlled variants (SPEC §7).

Ten classes are defined by shape alone. Each object also has a colour (class-correlated at `colour_rate`) and a
texture (class-correlated at `texture_rate`), so the variants can break one cue at a time:

- ``clean``          the training distribution.
- ``colour_shift``   the same scenes, object hue rotated by 180 degrees (invariance probes).
- ``unseen_domain``  the same objects on a background family never used in training (consensus probes).
- ``cue_conflict``   the same scenes, object texture taken from another class (shape-vs-texture probes);
                     ``extras["texture_labels"]`` holds the texture's class.
- ``shortcut``       a class-coded colour patch in the top-left corner, coding the true class with probability
                     `shortcut_rate` (else another class); ``extras["shortcut_labels"]`` holds the coded class.
- ``random_labels``  the same images with permuted labels (data-randomisation sanity check).

Options for studying what distillation transfers (SPEC §12), each seeded and leaving every other image's bytes alone:

- ``superclasses``       the classes fall into four super-classes (``SUPERCLASSES``) of similar shapes that also share
                         their class-correlated colour and texture, so only shape tells members apart and a teacher's
                         soft labels carry which classes resemble which.
- ``labelled_fraction``  keep exactly ``round(n * fraction)`` of the n scenes, stratified by class: a small labelled
                         set, drawn from the same scenes as the full split.
- ``label_noise``        exactly ``round(kept * noise)`` of those labels replaced by another class;
                         ``extras["true_labels"]`` holds the clean ones.
- split ``transfer``     a third split, disjoint from train and test: the unlabelled set a teacher labels.

Scene parameters come from ``SeedSequence([seed, split])`` and variant randomness from a separate stream, so a variant
shows exactly the same objects as the clean set. Rendering is vectorised over images with 2x2 supersampling.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kdscope.data.imageset import ImageSet, to_uint8
from kdscope.data.lazy import LazyArray, RowCache, mapped, npz_member
from kdscope.data.sampling import stratified_sample

CLASS_NAMES = ("circle", "square", "triangle", "plus", "ring", "star", "L", "T", "crescent", "bar")
SUPERCLASSES = {"round": ("circle", "ring", "crescent"), "boxy": ("square", "bar", "plus"),
                "pointed": ("triangle", "star"), "angled": ("L", "T")}
VARIANTS = ("clean", "colour_shift", "unseen_domain", "cue_conflict", "shortcut", "random_labels")
SPLITS = ("train", "test", "transfer")
GENERATOR_VERSION = 2
_CHUNK = 1024
_TEXTURE_DEPTH = 0.5
_PATCH = 4


@dataclass(frozen=True)
class ProbeWorldSpec:
    """Everything that determines a ProbeWorld set; equal specs give byte-identical data."""

    n: int = 10000
    split: str = "train"
    seed: int = 0
    size: int = 32
    variant: str = "clean"
    colour_rate: float = 0.6
    texture_rate: float = 0.5
    shortcut_rate: float = 1.0
    distractors: int = 5
    noise: float = 0.04
    superclasses: bool = False
    labelled_fraction: float = 1.0
    label_noise: float = 0.0

    def validate(self) -> None:
        if self.n < 1:
            raise ValueError(f"ProbeWorld needs n >= 1 images, got {self.n}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels so shapes stay recognisable, got {self.size}")
        if not 0.0 < self.labelled_fraction <= 1.0 or round(self.n * self.labelled_fraction) < 1:
            raise ValueError(f"labelled_fraction must lie in (0, 1] and keep at least one of the {self.n} images, "
                             f"got {self.labelled_fraction}")
        for name in ("colour_rate", "texture_rate", "shortcut_rate", "label_noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.distractors < 0 or self.noise < 0:
            raise ValueError("distractors and noise must be >= 0")

    @property
    def count(self) -> int:
        """How many images the set holds: the n scenes, or the labelled fraction of them."""
        return round(self.n * self.labelled_fraction)

    def cache_key(self) -> str:
        text = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def probeworld(
    n: int = 10000, *, split: str = "train", variant: str = "clean", seed: int = 0, size: int = 32,
    cache_dir: str | Path | bool | None = None, lazy: bool = False, **options: float,
) -> ImageSet:
    """Generate (or load from the disk cache) a ProbeWorld set. `options` are further ProbeWorldSpec fields.
    `lazy=True` renders (or reads from the cache file) only the images a batch asks for: the same bytes, in
    bounded memory; a lazy set is not written to the cache.

    The cache lives in `cache_dir` (default `$KDSCOPE_CACHE/probeworld` or `~/.cache/kdscope/probeworld`);
    `cache_dir=False` or `KDSCOPE_NO_CACHE=1` turns it off."""
    spec = ProbeWorldSpec(n=n, split=split, seed=seed, size=size, variant=variant, **options)
    spec.validate()
    path = _cache_path(spec, cache_dir)
    if path is not None and path.exists():
        return _load_cached(path, spec, lazy)
    if lazy:
        return rendered_on_demand(spec)
    data = generate(spec)
    if path is not None:
        _save_cached(path, data)
    return data


def generate(spec: ProbeWorldSpec) -> ImageSet:
    """Render a ProbeWorld set from its spec, without touching any cache."""
    scene = _scene(spec)
    pixels, masks = _render_rows(scene, spec, np.arange(spec.count))
    return _image_set(spec, scene, pixels, masks)


def rendered_on_demand(spec: ProbeWorldSpec) -> ImageSet:
    """The set `generate(spec)` makes, with pixels and masks rendered only for the rows a batch reads (a row
    renders to the same bytes alone as in the whole set: each image's randomness is its own)."""
    scene = _scene(spec)
    rows = RowCache(lambda index: _render_rows(scene, spec, index))
    shape = (spec.count, 3, spec.size, spec.size)
    source = f"probeworld-v{GENERATOR_VERSION}-{spec.cache_key()}"
    return _image_set(spec, scene, LazyArray(rows.part(0), shape, np.uint8, source=f"{source}-pixels"),
                      LazyArray(rows.part(1), (spec.count, spec.size, spec.size), bool, source=f"{source}-masks"))


def _scene(spec: ProbeWorldSpec) -> dict[str, np.ndarray]:
    spec.validate()
    scene = _sample_scene(spec)
    _apply_variant(scene, spec)
    scene = _labelled_part(scene, spec)
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in scene.items()}


def _render_rows(scene: dict[str, np.ndarray], spec: ProbeWorldSpec, index: np.ndarray) -> tuple[np.ndarray, ...]:
    pixels = np.empty((len(index), 3, spec.size, spec.size), np.uint8)
    masks = np.empty((len(index), spec.size, spec.size), bool)
    for start in range(0, len(index), _CHUNK):
        part = {k: v[index[start : start + _CHUNK]] for k, v in scene.items()}
        image, mask = _render(part, spec)
        pixels[start : start + _CHUNK] = to_uint8(image)
        masks[start : start + _CHUNK] = mask
    return pixels, masks


def _image_set(spec: ProbeWorldSpec, scene: dict[str, np.ndarray], pixels: np.ndarray | LazyArray,
               masks: np.ndarray | LazyArray) -> ImageSet:
    extras = {k: scene[k].astype(np.int64) for k in ("texture_labels", "shortcut_labels", "true_labels")
              if k in scene}
    return ImageSet(pixels=pixels, labels=scene["labels"].astype(np.int64), class_names=CLASS_NAMES, masks=masks,
                    extras=extras, description={"dataset": "probeworld", **asdict(spec)})


def _rng(spec: ProbeWorldSpec, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, SPLITS.index(spec.split), stream]))


def _sample_scene(spec: ProbeWorldSpec) -> dict[str, np.ndarray]:
    """Per-image scene parameters, shared by every variant of the same seed and split."""
    rng, n, s = _rng(spec, 0), spec.n, spec.size
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    radius = rng.uniform(0.2, 0.32, n) * s
    plain = np.arange(len(CLASS_NAMES))
    group, groups = (_SUPERCLASS_OF, len(SUPERCLASSES)) if spec.superclasses else (plain, len(CLASS_NAMES))
    own_hue = (group[labels] / groups + rng.normal(0, 0.02, n)) % 1.0
    hue = np.where(rng.random(n) < spec.colour_rate, own_hue, rng.random(n))
    own_texture = rng.random(n) < spec.texture_rate
    texture_of = _SUPERCLASS_TEXTURE if spec.superclasses else plain
    return {
        "labels": labels,
        "shapes": labels.copy(),
        "cx": rng.uniform(radius, s - radius),
        "cy": rng.uniform(radius, s - radius),
        "radius": radius,
        "angle": rng.uniform(0, 2 * np.pi, n),
        "object_rgb": _hsv_to_rgb(hue, rng.uniform(0.55, 1.0, n), rng.uniform(0.6, 1.0, n)),
        "texture_labels": np.where(own_texture, texture_of[labels], rng.integers(0, len(CLASS_NAMES), n)),
        "texture_phase": rng.uniform(0, 2 * np.pi, n),
        "background_grid": _hsv_to_rgb(
            rng.random((n, 3, 3)), rng.uniform(0.0, 0.7, (n, 3, 3)), rng.uniform(0.05, 0.5, (n, 3, 3))
        ),
        "distractor_ends": rng.uniform(0, s, (n, spec.distractors, 4)),
        "distractor_is_line": rng.random((n, spec.distractors)) < 0.6,
        "distractor_rgb": _hsv_to_rgb(
            rng.random((n, spec.distractors)), rng.uniform(0.3, 1.0, (n, spec.distractors)),
            rng.uniform(0.3, 0.9, (n, spec.distractors)),
        ),
        "noise_seed": rng.integers(0, 2**31, n),
        "unseen": np.zeros(n, bool),
        "shortcut_labels": np.full(n, -1),
    }


def _apply_variant(scene: dict[str, np.ndarray], spec: ProbeWorldSpec) -> None:
    rng, n, k = _rng(spec, 1 + VARIANTS.index(spec.variant)), spec.n, len(CLASS_NAMES)
    labels = scene["labels"]
    if spec.variant == "colour_shift":
        hsv = _rgb_to_hsv(scene["object_rgb"])
        scene["object_rgb"] = _hsv_to_rgb((hsv[..., 0] + 0.5) % 1.0, hsv[..., 1], hsv[..., 2])
    elif spec.variant == "unseen_domain":
        scene["unseen"] = np.ones(n, bool)
    elif spec.variant == "cue_conflict":
        scene["texture_labels"] = (labels + rng.integers(1, k, n)) % k
    elif spec.variant == "shortcut":
        keep = rng.random(n) < spec.shortcut_rate
        scene["shortcut_labels"] = np.where(keep, labels, (labels + rng.integers(1, k, n)) % k)
    elif spec.variant == "random_labels":
        scene["labels"] = rng.permutation(labels)
    if spec.variant != "shortcut":
        del scene["shortcut_labels"]


def _labelled_part(scene: dict[str, np.ndarray], spec: ProbeWorldSpec) -> dict[str, np.ndarray]:
    """The labelled subset and its label noise, from streams of their own: the kept scenes render exactly as in the
    full split, and every variant keeps the same scenes and the same noisy labels."""
    if spec.labelled_fraction == 1.0 and spec.label_noise == 0.0:
        return scene
    k = len(CLASS_NAMES)
    keep = stratified_sample(scene["shapes"], spec.count, int(_rng(spec, 100).integers(2**62)))
    scene = {name: values[keep] for name, values in scene.items()}
    true = scene["labels"]
    noisy = _rng(spec, 101).permutation(len(true))[: round(len(true) * spec.label_noise)]
    labels = true.copy()
    labels[noisy] = (true[noisy] + _rng(spec, 102).integers(1, k, len(noisy))) % k
    return {**scene, "labels": labels, "true_labels": true}


def _render(scene: dict[str, np.ndarray], spec: ProbeWorldSpec) -> tuple[np.ndarray, np.ndarray]:
    """Draw one chunk: background, distractors, textured object (2x2 supersampled coverage), patch, noise."""
    n, s = len(scene["shapes"]), spec.size
    image = _background(scene, s)
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    _draw_distractors(image, scene, x, y)

    fine = (np.arange(2 * s, dtype=np.float32) + 0.5) / 2
    coverage = _shape_inside(scene, fine[None, :], fine[:, None]).astype(np.float32)
    coverage = coverage.reshape(n, s, 2, s, 2).mean(axis=(2, 4))
    texture = _texture(scene["texture_labels"], scene["texture_phase"], x, y)
    shade = 1.0 - _TEXTURE_DEPTH + _TEXTURE_DEPTH * texture
    obj = scene["object_rgb"][:, :, None, None] * shade[:, None]
    alpha = coverage[:, None]
    image = image * (1 - alpha) + obj * alpha

    if "shortcut_labels" in scene:
        hue = scene["shortcut_labels"] / len(CLASS_NAMES)
        patch = _hsv_to_rgb(hue, np.ones(n), np.ones(n))
        image[:, :, 1 : 1 + _PATCH, 1 : 1 + _PATCH] = patch[:, :, None, None]

    noise = np.stack(
        [np.random.default_rng(seed).standard_normal((3, s, s), np.float32) for seed in scene["noise_seed"]]
    )
    image = np.clip(image + spec.noise * noise, 0.0, 1.0)
    return image, coverage >= 0.5


def _background(scene: dict[str, np.ndarray], s: int) -> np.ndarray:
    """Smooth colour fields (bilinear 3x3 grid) in the training domain; blocky bright noise in the unseen one."""
    grid = scene["background_grid"].transpose(0, 3, 1, 2)
    t = (np.arange(s, dtype=np.float32) + 0.5) / s * 2.0
    i0 = np.minimum(t.astype(int), 1)
    weights = np.zeros((s, 3), np.float32)
    weights[np.arange(s), i0] = 1 - (t - i0)
    weights[np.arange(s), i0 + 1] = t - i0
    smooth = np.einsum("ia,ncab,jb->ncij", weights, grid, weights, optimize=True)
    unseen = scene["unseen"]
    if unseen.any():
        cells = np.repeat(np.repeat(np.tile(grid, (1, 1, 3, 3)), s // 9 + 1, axis=2), s // 9 + 1, axis=3)
        bright = 1.0 - cells[:, :, :s, :s] * 0.8
        smooth = np.where(unseen[:, None, None, None], bright, smooth)
    return smooth.astype(np.float32)


def _draw_distractors(image: np.ndarray, scene: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> None:
    """Thin line segments and small blobs beneath the object, so the object mask stays exact."""
    ends = scene["distractor_ends"].astype(np.float32)[..., None, None]
    x0, y0, x1, y1 = ends[:, :, 0], ends[:, :, 1], ends[:, :, 2], ends[:, :, 3]
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-6), 0, 1)
    line_ink = (x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2 < 0.36
    blob_ink = (x - x0) ** 2 + (y - y0) ** 2 < (1.0 + (x1 % 1.5)) ** 2
    ink = np.where(scene["distractor_is_line"][..., None, None], line_ink, blob_ink)
    for k in range(ink.shape[1]):
        np.copyto(image, scene["distractor_rgb"][:, k, :, None, None], where=ink[:, k, None])


def _shape_inside(scene: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean inside-test of each image's shape at pixel coordinates (x, y), in the object's own frame."""
    c, s_ = np.cos(scene["angle"])[:, None, None], np.sin(scene["angle"])[:, None, None]
    r = scene["radius"][:, None, None]
    px, py = x - scene["cx"][:, None, None], y - scene["cy"][:, None, None]
    u = ((c * px + s_ * py) / r).astype(np.float32)
    v = ((-s_ * px + c * py) / r).astype(np.float32)
    out = np.zeros(u.shape, bool)
    for label, inside in enumerate(_SHAPES):
        rows = scene["shapes"] == label
        if rows.any():
            out[rows] = inside(u[rows], v[rows])
    return out


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    normals = [(np.cos(a), np.sin(a)) for a in np.deg2rad([270.0, 30.0, 150.0])]
    return np.logical_and.reduce([u * nx + v * ny <= 0.5 for nx, ny in normals])


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) <= 0.4 + 0.55 * np.abs(np.cos(2.5 * np.arctan2(v, u))) ** 3


_SUPERCLASS_OF = np.array([next(i for i, members in enumerate(SUPERCLASSES.values()) if name in members)
                           for name in CLASS_NAMES])
_SUPERCLASS_TEXTURE = np.array([CLASS_NAMES.index(list(SUPERCLASSES.values())[g][0]) for g in _SUPERCLASS_OF])
"""Per class, the class whose texture its super-class shares (the super-class's first member)."""
_SHAPES = (
    lambda u, v: u * u + v * v <= 0.85**2,
    lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.72,
    _triangle,
    lambda u, v: ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.9)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 0.9)),
    lambda u, v: (np.hypot(u, v) <= 0.9) & (np.hypot(u, v) >= 0.5),
    _star,
    lambda u, v: ((u >= -0.8) & (u <= -0.25) & (np.abs(v) <= 0.85)) | ((np.abs(u) <= 0.8) & (v >= 0.3) & (v <= 0.85)),
    lambda u, v: ((np.abs(u) <= 0.85) & (v >= -0.85) & (v <= -0.3)) | ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.85)),
    lambda u, v: (np.hypot(u, v) <= 0.9) & (np.hypot(u - 0.45, v) > 0.7),
    lambda u, v: (np.abs(u) <= 0.9) & (np.abs(v) <= 0.3),
)


def _texture(labels: np.ndarray, phase: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ten class textures in image coordinates: oriented stripes at two periods, a checkerboard, a dot grid."""
    k = labels[:, None, None]
    ph = phase[:, None, None]
    angle = np.deg2rad(45.0 * (k % 4))
    period = np.where(k < 4, 3.5, 6.0)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + ph)
    checker = (np.sin(np.pi * x / 3 + ph) * np.sin(np.pi * y / 3) > 0).astype(np.float32)
    dots = ((np.cos(2 * np.pi * x / 5 + ph) + np.cos(2 * np.pi * y / 5)) > 1.0).astype(np.float32)
    return np.where(k < 8, stripes, np.where(k == 8, checker, dots)).astype(np.float32)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB; returns (..., 3) float32."""
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0].astype(np.float32)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    s = np.where(v > 0, delta / np.maximum(v, 1e-12), 0.0)
    safe = np.maximum(delta, 1e-12)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], -1)


def default_cache_dir() -> Path:
    return Path(os.environ.get("KDSCOPE_CACHE", Path.home() / ".cache" / "kdscope")) / "probeworld"


def _cache_path(spec: ProbeWorldSpec, cache_dir: str | Path | bool | None) -> Path | None:
    if cache_dir is False or os.environ.get("KDSCOPE_NO_CACHE"):
        return None
    root = default_cache_dir() if cache_dir is None or cache_dir is True else Path(cache_dir)
    return root / f"probeworld-v{GENERATOR_VERSION}-{spec.cache_key()}.npz"


def _save_cached(path: Path, data: ImageSet) -> None:
    """Atomic write: a crash never leaves a half-written cache file that later loads as data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, pixels=data.pixels, labels=data.labels, masks=data.masks,
             **{f"extra_{k}": v for k, v in data.extras.items()})
    os.replace(tmp, path)


def _load_cached(path: Path, spec: ProbeWorldSpec, lazy: bool) -> ImageSet:
    description = {"dataset": "probeworld", **asdict(spec)}
    if lazy:
        source = f"probeworld-v{GENERATOR_VERSION}-{spec.cache_key()}"
        return ImageSet(pixels=mapped(npz_member(path, "pixels"), f"{source}-pixels"),
                        labels=np.array(npz_member(path, "labels")), class_names=CLASS_NAMES,
                        masks=mapped(npz_member(path, "masks"), f"{source}-masks"), extras=_cached_extras(path),
                        description=description)
    with np.load(path, allow_pickle=False) as f:
        return ImageSet(pixels=f["pixels"], labels=f["labels"], class_names=CLASS_NAMES, masks=f["masks"],
                        extras=_cached_extras(path), description=description)


def _cached_extras(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k[len("extra_"):]: f[k] for k in f.files if k.startswith("extra_")}
