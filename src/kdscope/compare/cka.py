"""Centered kernel alignment (Kornblith et al. 2019) between two representations of the same images.

Linear CKA is computed in feature space from running float64 moments, so any split into batches gives the
full-data value exactly and memory does not grow with N (it is d_x * d_y + d_x^2 + d_y^2 numbers). Moments are
taken about the first batch's mean (centring inside the batch): both estimators are unchanged by a shift of the
features, and without it the debiased terms of features with large offsets cancel catastrophically. The debiased
estimator (the default) uses the unbiased HSIC of Song et al. 2012, written in terms of the same moments:

    HSIC_1(K, L) = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)),  K~ = K with zero diagonal

with K = X X^T and L = Y Y^T never formed. The biased estimator centres with the running means. RBF CKA needs the
Gram matrices, so `gram_cka` takes the whole feature matrices. Rows are images: conv maps are flattened or averaged
over space first (`as_rows`), and the choice is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from kdscope.core.subject import Subject
from kdscope.data.imageset import ImageSet


def as_rows(features: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """(N, ...) activations -> (N, D) float64 rows: 'mean' averages over positions (a conv map's pixels, a ViT
    block's tokens, class token included), so a ViT and a CNN compare feature for feature; 'flatten' keeps every
    position."""
    if reduce not in ("mean", "flatten"):
        raise ValueError(f"reduce must be 'mean' or 'flatten', got {reduce!r}")
    features = features.detach().to(torch.float64)
    if reduce == "mean" and features.ndim == 4:
        features = features.mean((2, 3))
    elif reduce == "mean" and features.ndim == 3:
        features = features.mean(1)
    return features.flatten(1)


@dataclass
class _Moments:
    """Running sums of one representation: sum of rows, Gram in feature space, and the diagonal terms."""

    sum: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    norms: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    norms_squared: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    weighted: torch.Tensor | None = None

    def update(self, rows: torch.Tensor) -> torch.Tensor:
        squared = (rows * rows).sum(1)
        for name, value in (("sum", rows.sum(0)), ("gram", rows.T @ rows), ("weighted", rows.T @ squared)):
            current = getattr(self, name)
            setattr(self, name, value if current is None else current + value)
        self.norms = self.norms + squared.sum()
        self.norms_squared = self.norms_squared + (squared * squared).sum()
        return squared


class CKAAccumulator:
    """Streaming linear CKA between two representations; `update` per batch, `merge` across workers, `value` at
    the end. `debiased=True` (default) uses unbiased HSIC; biased CKA with few images and wide layers is mostly
    bias."""

    def __init__(self, *, debiased: bool = True) -> None:
        self.debiased = debiased
        self.n = 0
        self.shift_x: torch.Tensor | None = None
        self.shift_y: torch.Tensor | None = None
        self.x, self.y = _Moments(), _Moments()
        self.cross: torch.Tensor | None = None
        self.x_weighted_by_y: torch.Tensor | None = None
        self.y_weighted_by_x: torch.Tensor | None = None
        self.diagonal = torch.zeros((), dtype=torch.float64)

    def update(self, x: torch.Tensor, y: torch.Tensor) -> CKAAccumulator:
        x, y = as_rows(x, "flatten"), as_rows(y, "flatten")
        if len(x) != len(y):
            raise ValueError(f"x and y need one row per image each, got {len(x)} and {len(y)}")
        if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
            raise ValueError("features contain NaN or inf")
        if self.shift_x is None:
            self.shift_x, self.shift_y = x.mean(0), y.mean(0)
        x, y = x - self.shift_x, y - self.shift_y
        x_squared, y_squared = self.x.update(x), self.y.update(y)
        for name, value in (("cross", x.T @ y), ("x_weighted_by_y", x.T @ y_squared),
                            ("y_weighted_by_x", y.T @ x_squared)):
            current = getattr(self, name)
            setattr(self, name, value if current is None else current + value)
        self.diagonal = self.diagonal + (x_squared * y_squared).sum()
        self.n += len(x)
        return self

    def merge(self, other: CKAAccumulator) -> CKAAccumulator:
        """Combine with an accumulator that saw other images (the same layers): equal to one pass over both."""
        if other.n == 0:
            return self
        if self.n == 0:
            self.__dict__.update({k: v for k, v in other.__dict__.items() if k != "debiased"})
            return self
        other = other.moved_to(self.shift_x, self.shift_y)
        for mine, theirs in ((self.x, other.x), (self.y, other.y)):
            for name in ("sum", "gram", "norms", "norms_squared", "weighted"):
                setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
        for name in ("cross", "x_weighted_by_y", "y_weighted_by_x", "diagonal"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.n += other.n
        return self

    def moved_to(self, shift_x: torch.Tensor, shift_y: torch.Tensor) -> CKAAccumulator:
        """A copy whose moments are taken about other shifts (so that two accumulators can be added). Every moment
        is rewritten exactly; the shifts only keep float64 away from cancelling large offsets."""
        moved = CKAAccumulator(debiased=self.debiased)
        moved.n, moved.shift_x, moved.shift_y = self.n, shift_x, shift_y
        dx, dy = shift_x - self.shift_x, shift_y - self.shift_y
        moved.x, moved.y = _move(self.x, dx, self.n), _move(self.y, dy, self.n)
        cx, cy, n = dx @ dx, dy @ dy, self.n
        sx, sy = self.x.sum, self.y.sum
        moved.cross = self.cross - torch.outer(sx, dy) - torch.outer(dx, sy) + n * torch.outer(dx, dy)
        moved.x_weighted_by_y = (self.x_weighted_by_y - 2 * self.cross @ dy + cy * sx - dx * self.y.norms
                                 + 2 * dx * (sy @ dy) - n * cy * dx)
        moved.y_weighted_by_x = (self.y_weighted_by_x - 2 * self.cross.T @ dx + cx * sy - dy * self.x.norms
                                 + 2 * dy * (sx @ dx) - n * cx * dy)
        moved.diagonal = (self.diagonal - 2 * dy @ self.y_weighted_by_x + cy * self.x.norms
                          - 2 * dx @ self.x_weighted_by_y + 4 * dx @ self.cross @ dy - 2 * cy * (sx @ dx)
                          + cx * self.y.norms - 2 * cx * (sy @ dy) + n * cx * cy)
        return moved

    def value(self) -> float:
        minimum = 4 if self.debiased else 2
        if self.n < minimum:
            raise ValueError(f"{'debiased' if self.debiased else 'biased'} CKA needs at least {minimum} images, "
                             f"got {self.n}")
        xy = self._hsic(self.cross, self.x, self.y, self.x_weighted_by_y, self.y_weighted_by_x, self.diagonal)
        xx = self._hsic(self.x.gram, self.x, self.x, self.x.weighted, self.x.weighted, self.x.norms_squared)
        yy = self._hsic(self.y.gram, self.y, self.y, self.y.weighted, self.y.weighted, self.y.norms_squared)
        denominator = torch.sqrt(xx.clamp(min=0) * yy.clamp(min=0))
        return float(xy / denominator) if float(denominator) > 0 else float("nan")

    def _hsic(self, cross: torch.Tensor, a: _Moments, b: _Moments, a_by_b: torch.Tensor, b_by_a: torch.Tensor,
              diagonal: torch.Tensor) -> torch.Tensor:
        n = self.n
        if not self.debiased:
            centred = cross - torch.outer(a.sum, b.sum) / n
            return (centred * centred).sum()
        trace = (cross * cross).sum() - diagonal
        a_total = a.sum @ a.sum - a.norms
        b_total = b.sum @ b.sum - b.norms
        product = a.sum @ cross @ b.sum - a.sum @ a_by_b - b.sum @ b_by_a + diagonal
        return (trace + a_total * b_total / ((n - 1) * (n - 2)) - 2 / (n - 2) * product) / (n * (n - 3))


def _move(moments: _Moments, delta: torch.Tensor, n: int) -> _Moments:
    """The moments of rows r - delta, from those of rows r."""
    c = delta @ delta
    s, g = moments.sum, moments.gram
    return _Moments(
        sum=s - n * delta,
        gram=g - torch.outer(s, delta) - torch.outer(delta, s) + n * torch.outer(delta, delta),
        norms=moments.norms - 2 * s @ delta + n * c,
        norms_squared=(moments.norms_squared + 4 * delta @ g @ delta + n * c * c - 4 * moments.weighted @ delta
                       + 2 * c * moments.norms - 4 * c * (s @ delta)),
        weighted=(moments.weighted - 2 * g @ delta + c * s - delta * moments.norms + 2 * delta * (s @ delta)
                  - n * c * delta),
    )


def gram_cka(x: torch.Tensor, y: torch.Tensor, *, kernel: str = "linear", debiased: bool = True,
             bandwidth: float = 1.0) -> float:
    """CKA from the full Gram matrices (linear or RBF). The RBF width is `bandwidth` times the median pairwise
    distance of each representation. O(N^2) memory: for large N use CKAAccumulator (linear).

    Features are centred (column means removed) before the Gram matrix is formed, as CKAAccumulator does: both
    estimators are unchanged by a shift of the features, and without it float64 cancels catastrophically at large
    offsets. Too few images and a representation that is the same for every image are errors, not inf or NaN."""
    x, y = as_rows(x, "flatten"), as_rows(y, "flatten")
    if len(x) != len(y):
        raise ValueError(f"x and y need one row per image each, got {len(x)} and {len(y)}")
    minimum = 4 if debiased else 2
    if len(x) < minimum:
        raise ValueError(f"{'debiased' if debiased else 'biased'} CKA needs at least {minimum} images, got {len(x)}")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ValueError("features contain NaN or inf")
    grams = [_gram(features - features.mean(0), kernel, bandwidth) for features in (x, y)]
    hsic = _unbiased_hsic if debiased else _biased_hsic
    xy, xx, yy = hsic(grams[0], grams[1]), hsic(grams[0], grams[0]), hsic(grams[1], grams[1])
    for name, self_similarity in (("x", xx), ("y", yy)):
        if not float(self_similarity) > 0:
            raise ValueError(f"CKA is undefined: representation {name} does not vary across the images (its "
                             "HSIC with itself is 0); tap another layer or use more varied images")
    return float(xy / torch.sqrt(xx * yy))


def _gram(features: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    if kernel == "linear":
        return features @ features.T
    if kernel != "rbf":
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    distances = torch.cdist(features, features).pow(2)
    median = torch.median(distances[distances > 0]) if bool((distances > 0).any()) else torch.tensor(1.0)
    return torch.exp(-distances / (2 * (bandwidth ** 2) * median))


def _biased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741 - the paper's notation
    n = len(k)
    centring = torch.eye(n, dtype=k.dtype) - 1 / n
    return (centring @ k @ centring * l).sum()


def _unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741 - the paper's notation
    n = len(k)
    k, l = k - torch.diag(torch.diag(k)), l - torch.diag(torch.diag(l))  # noqa: E741
    ones = torch.ones(n, dtype=k.dtype)
    return ((k * l).sum() + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (ones @ k @ l @ ones)) / (n * (n - 3))


MAX_FEATURE_DIMENSION = 8192


def shuffled_pairing(n: int, seed: int) -> torch.Tensor:
    """The CKA control's pairing: image i's first-model features meet image perm[i]'s second-model features, perm
    one seeded permutation of all n images. (A permutation inside each batch would only shuffle within a batch.)"""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


class CKAGridAccumulator:
    """Layer x layer streaming CKA between two models, and its shuffled-pairing control. `update` per batch with
    each layer's rows of the first model, the second model's rows of the same images, and the second model's rows
    of the images `shuffled_pairing` pairs them with; `merge` across workers; `compute` -> (values, control)."""

    def __init__(self, first_layers: int, second_layers: int, *, debiased: bool = True) -> None:
        self.values = [[CKAAccumulator(debiased=debiased) for _ in range(second_layers)] for _ in range(first_layers)]
        self.control = [[CKAAccumulator(debiased=debiased) for _ in range(second_layers)] for _ in range(first_layers)]

    def update(self, first: Sequence[torch.Tensor], second: Sequence[torch.Tensor],
               second_paired: Sequence[torch.Tensor]) -> CKAGridAccumulator:
        shape = (len(self.values), len(self.values[0]) if self.values else 0)
        if (len(first), len(second), len(second_paired)) != (shape[0], shape[1], shape[1]):
            raise ValueError(f"expected {shape[0]} first-model layers and {shape[1]} second-model layers (twice), got "
                             f"{len(first)}, {len(second)} and {len(second_paired)}")
        for i, a in enumerate(first):
            for j, (b, paired) in enumerate(zip(second, second_paired)):
                self.values[i][j].update(a, b)
                self.control[i][j].update(a, paired)
        return self

    def merge(self, other: CKAGridAccumulator) -> CKAGridAccumulator:
        """Combine with an accumulator that saw other images of the same layers: equal to one pass over both."""
        for mine, theirs in ((self.values, other.values), (self.control, other.control)):
            for row, other_row in zip(mine, theirs, strict=True):
                for cell, other_cell in zip(row, other_row, strict=True):
                    cell.merge(other_cell)
        return self

    def compute(self) -> tuple[list[list[float]], list[list[float]]]:
        return ([[cell.value() for cell in row] for row in self.values],
                [[cell.value() for cell in row] for row in self.control])


@dataclass
class CKAGrid:
    """Layer x layer CKA between two Subjects, and the shuffled-pairing control (images paired by one seeded
    permutation of all of them, which should give about 0 with the debiased estimator)."""

    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    control: list[list[float]]
    reduce: str
    debiased: bool
    images: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def cka_grid(first: Subject, second: Subject, data: ImageSet, first_layers: list[str], second_layers: list[str], *,
             reduce: str = "mean", debiased: bool = True, batch_size: int = 256, seed: int = 0) -> CKAGrid:
    """Tap every chosen layer of both Subjects in one pass over `data`; conv maps are averaged over space
    (`reduce='mean'`) or flattened. The control pairs each image's first-model features with the second-model
    features of the image `shuffled_pairing(len(data), seed)` assigns it (the audit's control), which costs the
    second model one more forward pass, batch by batch, so that memory still does not grow with N."""
    for subject, layers in ((first, first_layers), (second, second_layers)):
        for layer in layers:
            subject.layer(layer)
    grid = CKAGridAccumulator(len(first_layers), len(second_layers), debiased=debiased)
    pairing = shuffled_pairing(len(data), seed).numpy()
    start = 0
    for x, _ in data.batches(batch_size):
        partners = data.images(pairing[start:start + len(x)])
        start += len(x)
        with first.capture(first_layers) as taps_a, second.capture(second_layers) as taps_b:
            first.logits(x)
            second.logits(x)
        rows_a = [as_rows(taps_a[name], reduce).cpu() for name in first_layers]
        rows_b = [as_rows(taps_b[name], reduce).cpu() for name in second_layers]
        for rows in rows_a + rows_b:
            if rows.shape[1] > MAX_FEATURE_DIMENSION:
                raise ValueError(f"{rows.shape[1]} features per image: feature-space CKA would hold a "
                                 f"{rows.shape[1]}^2 matrix; use reduce='mean' or gram_cka on a subset")
        with second.capture(second_layers) as taps_paired:
            second.logits(partners)
        rows_paired = [as_rows(taps_paired[name], reduce).cpu() for name in second_layers]
        grid.update(rows_a, rows_b, rows_paired)
    values, control = grid.compute()
    return CKAGrid(list(first_layers), list(second_layers), values, control, reduce, debiased, len(data))
