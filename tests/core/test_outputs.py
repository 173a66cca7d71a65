"""A Subject finds the logits in whatever its model returns (tensor, tuple, list, dict, HuggingFace ModelOutput, or
the user's `output=`), refuses what it cannot decide, and every stage sees the same logits."""

from collections import OrderedDict
from dataclasses import dataclass

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from kdscope import Subject, explain
from kdscope.attacks import run
from kdscope.cli.main import main


class Wrapped(nn.Module):
    """The same linear CNN head, its logits packed as `pack` says."""

    def __init__(self, pack: str, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Linear(4, classes)
        self.pack = pack

    def forward(self, x: torch.Tensor) -> object:
        logits = self.fc(self.relu(self.conv(x)).mean((2, 3)))
        features = logits.detach() * 0
        return {
            "tensor": lambda: logits,
            "tuple": lambda: (logits, features),
            "list": lambda: [logits, features],
            "dict": lambda: {"hidden": features, "logits": logits},
            "model_output": lambda: ModelOutputLike(logits=logits, hidden_states=features),
            "scores": lambda: {"scores": logits, "hidden": features},
            "object": lambda: Scored(logits),
            "strings": lambda: ("no", logits),
        }[self.pack]()


class ModelOutputLike(OrderedDict):
    """What `transformers.utils.ModelOutput` is: an OrderedDict whose keys are also attributes."""

    def __getattr__(self, name: str) -> object:
        return self[name]


@dataclass
class Scored:
    scores: torch.Tensor


def scores_model() -> nn.Module:
    """A `module:function` factory for the CLI test: ten classes, logits under 'scores'."""
    return Wrapped("scores", classes=10)


X = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
Y = torch.tensor([0, 1, 2, 0])


def reference_logits() -> torch.Tensor:
    return Subject(Wrapped("tensor")).logits(X)


@pytest.mark.parametrize("pack", ["tuple", "list", "dict", "model_output"])
def test_the_logits_are_found_without_being_told(pack):
    torch.testing.assert_close(Subject(Wrapped(pack)).logits(X), reference_logits(), rtol=0, atol=0)


@pytest.mark.parametrize(("pack", "output"), [("scores", "scores"), ("object", "scores"),
                                              ("strings", lambda out: out[1])])
def test_the_user_names_the_logits(pack, output):
    torch.testing.assert_close(Subject(Wrapped(pack), output=output).logits(X), reference_logits(), rtol=0, atol=0)


@pytest.mark.parametrize("pack", ["scores", "object", "strings"])
def test_outputs_without_findable_logits_are_refused_with_the_fix(pack):
    with pytest.raises(ValueError, match="output='KEY'"):
        Subject(Wrapped(pack)).logits(X)


def test_a_key_that_is_not_there_lists_what_is():
    with pytest.raises(ValueError, match=r"no 'logit'; it has \['scores', 'hidden'\]"):
        Subject(Wrapped("scores"), output="logit").logits(X)
    with pytest.raises(TypeError, match="a key .str. or a callable"):
        Subject(Wrapped("scores"), output=3)


@pytest.mark.parametrize("method", ["gradient", "gradcam", "occlusion", "guided_backprop"])
def test_explainers_see_the_same_logits(method):
    params = {"occlusion": {"patch": 4, "stride": 4}}.get(method, {})
    expected = explain(Subject(Wrapped("tensor")), X, Y, method=method, **params).maps
    got = explain(Subject(Wrapped("model_output")), X, Y, method=method, **params).maps
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("attack", ["pgd", "square"])
def test_attacks_see_the_same_logits(attack):
    params = {"pgd": {"steps": 3}, "square": {"queries": 20}}[attack]
    expected = run(Subject(Wrapped("tensor")), X, Y, attack=attack, eps=8 / 255, **params).adversarial
    got = run(Subject(Wrapped("tuple")), X, Y, attack=attack, eps=8 / 255, **params).adversarial
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_the_cli_takes_the_key_of_the_logits():
    args = ["evaluate", "--model", "tests.core.test_outputs:scores_model", "--random-weights", "--mean", "0.5",
            "--std", "0.25", "--data", "probeworld",
            "--n", "8"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "--output KEY" in refused.output
    done = CliRunner().invoke(main, [*args, "--output", "scores"])
    assert done.exit_code == 0, done.output
    assert "accuracy" in done.output
