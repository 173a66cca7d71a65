"""kdscope's superpixel SHAP against shap's Exact explainer, the exact Shapley values of the same superpixel game.

Source: shap/shap tests/explainers/test_exact.py at commit df974a1966294b9c7acebb1373fd6dc5445d1d3d. Its cases run
ExactExplainer on xgboost models of the adult data and assert additivity, base_values + values.sum(1) ==
model(X); they need xgboost and a dataset download, so the models here are captum's tiny test models
(tests/peers/captum_models.py). The game: a player is one of kdscope's square superpixels (all channels); a
coalition keeps its superpixels and sets the rest to the baseline; the payoff is the target's score. shap's Exact
enumerates every coalition (Independent masker, background "all absent"), so its values are exact.

What agrees: additivity exactly (kdscope: f(baseline) + map sum == f(x)); on an additive model every sampled
permutation gives the exact values, so kdscope equals shap's to float precision; on a non-additive model
kdscope's permutation sampling is within four standard errors of shap's values (the standard error of each
superpixel's sampled mean, from its marginal contributions over all orders).

shap compiles its numba kernels on the first call: this module costs about 20 seconds once.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kdscope import Subject
from kdscope.explainers import explain
from kdscope.explainers.shap import grid_superpixels
from tests.peers.captum_models import (
    BasicLinearModel,
    BasicModel_ConvNet_One_Conv,
    BasicModel_MultiLayer_MultiInput,
    PeerImage,
)

shap = pytest.importorskip("shap")


class Game:
    """The superpixel game of one image: payoff(keep) = f(x where the kept superpixels are, baseline elsewhere)."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, cell: int, baseline: float) -> None:
        self.model, self.x, self.cell, self.baseline = model, x, cell, baseline
        self.ids = grid_superpixels(x.shape[2], x.shape[3], cell)[0, 0]
        self.players = int(self.ids.max()) + 1

    def __call__(self, keep: np.ndarray) -> np.ndarray:
        """(k, players) 0/1 rows -> (k,) payoffs of target 0."""
        keep = torch.as_tensor(np.asarray(keep), dtype=torch.bool)[:, self.ids].unsqueeze(1)
        images = torch.where(keep, self.x, torch.full_like(self.x, self.baseline))
        with torch.no_grad():
            return self.model(images)[:, 0].double().numpy()

    def exact(self) -> tuple[np.ndarray, float]:
        """shap's ExactExplainer: (players,) Shapley values and the base value f(all absent)."""
        explainer = shap.explainers.Exact(self, shap.maskers.Independent(np.zeros((1, self.players)), max_samples=1))
        result = explainer(np.ones((1, self.players)), silent=True)
        return result.values[0], float(np.asarray(result.base_values).reshape(-1)[0])

    def standard_deviations(self) -> np.ndarray:
        """Each player's marginal contributions over all orders: their standard deviation."""
        contributions = [[] for _ in range(self.players)]
        for order in itertools.permutations(range(self.players)):
            keep = np.zeros((self.players + 1, self.players))
            for step, player in enumerate(order):
                keep[step + 1 :, player] = 1
            payoffs = self(keep)
            for step, player in enumerate(order):
                contributions[player].append(payoffs[step + 1] - payoffs[step])
        return np.array([np.std(c) for c in contributions])


def kdscope_values(game: Game, permutations: int) -> tuple[np.ndarray, torch.Tensor]:
    x = game.x
    subject = Subject(game.model, input_range=(min(float(x.min()), 0.0), max(float(x.max()), 1.0)),
                      outputs="logits")
    maps = explain(subject, x, torch.tensor([0]), method="superpixel_shap", cell=game.cell,
                   baseline=game.baseline, permutations=permutations).maps
    values = torch.zeros(game.players, dtype=torch.float64).index_add_(0, game.ids.flatten(), maps.flatten().double())
    return values.numpy(), maps


def check_additive(game: Game, maps: torch.Tensor, base: float) -> None:
    """shap's test_exact.py assertion, base_values + values.sum() == f(x), for shap and for kdscope."""
    full = float(game(np.ones((1, game.players)))[0])
    assert base == pytest.approx(float(game(np.zeros((1, game.players)))[0]), abs=1e-5)
    assert base + float(maps.double().sum()) == pytest.approx(full, abs=1e-3)


def test_additive_model_matches_shap_exact_to_float_precision():
    """captum's BasicLinearModel (Linear(7, 1), seed 1234) on a 1 x 7 image of seeded uniform values, 1 x 1
    superpixels, baseline 0.5: each player's value is w_i (x_i - 0.5) in every order, so kdscope's sampling (two
    permutations) is exact."""
    torch.manual_seed(1234)
    linear = BasicLinearModel().eval()
    model = PeerImage(linear, inputs=lambda x: [x[:, 0, 0, :3], x[:, 0, 0, 3:]])
    x = torch.rand(1, 1, 1, 7, generator=torch.Generator().manual_seed(0))
    game = Game(model, x, cell=1, baseline=0.5)
    exact, base = game.exact()
    np.testing.assert_allclose(exact, (linear.linear.weight[0] * (x.flatten() - 0.5)).double().detach().numpy(),
                               atol=1e-6)
    values, maps = kdscope_values(game, permutations=2)
    np.testing.assert_allclose(values, exact, atol=1e-5)
    check_additive(game, maps, base)


@pytest.mark.parametrize(("model", "x", "cell"), [
    # captum's BasicModel_ConvNet_One_Conv on arange(16) + 1 (its multi-input case, summed), four 2 x 2 superpixels.
    pytest.param(BasicModel_ConvNet_One_Conv(), torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4) + 1, 2,
                 id="conv"),
    # captum's BasicModel_MultiLayer_MultiInput (scale 1) with its three inputs from test_shapley.py /
    # test_occlusion.py (first example) as the three channels of a 1 x 3 image, three 1 x 1 superpixels: each
    # superpixel holds the same feature of all three inputs, as a captum feature mask shared by the inputs does.
    pytest.param(PeerImage(BasicModel_MultiLayer_MultiInput(), 1),
                 torch.tensor([[23.0, 100.0, 0.0], [20.0, 50.0, 30.0], [0.0, 100.0, 10.0]]).view(1, 3, 1, 3), 1,
                 id="three_channels"),
])
def test_sampled_values_are_within_four_standard_errors_of_shap_exact(model, x, cell):
    game = Game(model, x, cell=cell, baseline=0.0)
    exact, base = game.exact()
    permutations = 200
    values, maps = kdscope_values(game, permutations=permutations)
    bound = 4 * game.standard_deviations() / permutations ** 0.5
    assert np.all(np.abs(values - exact) <= bound + 1e-4), (values, exact, bound)
    check_additive(game, maps, base)
