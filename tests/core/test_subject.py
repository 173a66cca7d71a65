import functools

import pytest
import torch
from torch import nn

from kdscope import zoo
from kdscope.core.hooks import ModuleChanges
from kdscope.core.subject import ProbabilityOutputError, Subject, check_logits
from kdscope.explainers.gradients import _guided_hook
from tests.conftest import assert_unchanged, parameters_snapshot
from tests.module_state import assert_modules_unchanged, modules_snapshot


def test_normalisation_lives_in_the_subject():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    subject = Subject(model, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 2.0])
    x = torch.tensor([1.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(subject.logits(x), torch.tensor([[1.0, 1.0 + 0.5]]))


def test_guard_restores_modes_and_flags_and_owned_hooks_go_after_an_exception(tiny_resnet):
    """Modes and requires_grad come back; hooks added through a ModuleChanges go with the flag torch set for them,
    whoever raised; the user's hooks stay."""
    tiny_resnet.train()
    tiny_resnet.layer1.eval()
    user_hook = tiny_resnet.fc.register_forward_hook(lambda *args: None)
    subject = Subject(tiny_resnet)
    before = modules_snapshot(tiny_resnet)
    with pytest.raises(RuntimeError, match="boom"), subject.guard(), ModuleChanges() as changes:
        assert not any(m.training for m in tiny_resnet.modules())
        changes.hook(tiny_resnet.layer2.register_forward_hook, _guided_hook, with_kwargs=True, always_call=True)
        changes.hook(tiny_resnet.fc.register_full_backward_hook, functools.partial(_guided_hook))
        changes.hook(tiny_resnet.stem.register_forward_pre_hook, _guided_hook)
        tiny_resnet.fc.weight.requires_grad_(False)
        raise RuntimeError("boom")
    assert tiny_resnet.training and not tiny_resnet.layer1.training and tiny_resnet.layer2.training
    assert list(tiny_resnet.fc._forward_hooks) == [user_hook.id]
    assert tiny_resnet.fc.weight.requires_grad
    assert_modules_unchanged(tiny_resnet, before)


def test_guard_keeps_hooks_the_user_adds_inside(tiny_resnet):
    subject = Subject(tiny_resnet)
    with subject.guard():
        forward = tiny_resnet.layer2.register_forward_hook(lambda *args: None)
        backward = tiny_resnet.fc.register_full_backward_hook(lambda *args: None)
    assert list(tiny_resnet.layer2._forward_hooks) == [forward.id]
    assert list(tiny_resnet.fc._backward_hooks) == [backward.id] and tiny_resnet.fc._is_full_backward_hook is True


def test_running_a_model_never_changes_it(tiny_resnet):
    """A model left in train mode would update BatchNorm statistics; the Subject runs it in eval mode."""
    tiny_resnet.train()
    snapshot = parameters_snapshot(tiny_resnet)
    subject = Subject(tiny_resnet)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    subject.logits(x)[:, 3].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    subject.predict(torch.rand(5, 3, 16, 16))
    assert_unchanged(tiny_resnet, snapshot)
    assert tiny_resnet.training


def test_in_place_relus_keep_gradients_exact():
    """d logit / d x of an in-place-ReLU network against central finite differences."""
    model = zoo.build("student", 3, seed=0, width=2).double()
    subject = Subject(model)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    with subject.guard():
        model(x)[0, 1].backward()
        eps, index = 1e-6, (0, 1, 3, 4)
        bump = torch.zeros_like(x)
        bump[index] = eps
        numeric = (model(x.detach() + bump)[0, 1] - model(x.detach() - bump)[0, 1]) / (2 * eps)
    assert abs(float(x.grad[index]) - float(numeric.detach())) < 1e-6


def test_probability_outputs_are_refused_with_the_fix():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Softmax(dim=1))
    with pytest.raises(ProbabilityOutputError, match="remove the final softmax"):
        Subject(model).logits(torch.rand(3, 3, 2, 2))
    log_probabilities = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.LogSoftmax(dim=1))
    assert Subject(log_probabilities).logits(torch.rand(3, 3, 2, 2)).shape == (3, 4)


class _ChannelMeans(nn.Module):
    """Foolbox's test model (tests/conftest.py): the logits are the per-channel means of the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(3).mean(2)


def test_real_logits_that_look_like_probabilities_are_judged_once_on_clean_inputs():
    """Foolbox's mean model: clean images give channel means that do not sum to 1; an attacked image can, and a
    targeted PGD used to stop there with ProbabilityOutputError."""
    subject = Subject(_ChannelMeans())
    subject.logits(torch.full((2, 3, 4, 4), 0.6))
    crafted = torch.stack([torch.full((4, 4), v) for v in (0.5, 0.3, 0.2)])[None]
    assert subject.logits(crafted).sum().item() == pytest.approx(1.0)
    with pytest.raises(ProbabilityOutputError, match="outputs='logits'"):
        Subject(_ChannelMeans()).logits(crafted)
    assert Subject(_ChannelMeans(), outputs="logits").logits(crafted).shape == (1, 3)


def test_one_hot_logits_are_not_called_probabilities():
    check_logits(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


@pytest.mark.parametrize("out", [torch.zeros(3), torch.zeros(3, 1), torch.zeros(2, 3, 4)])
def test_non_logit_shapes_are_refused(out):
    with pytest.raises(ValueError, match="logit"):
        check_logits(out)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.rand(3, 16, 16), ValueError, "4-D"),
        (torch.rand(2, 3, 16, 16).double(), TypeError, "float32"),
        ((torch.rand(2, 3, 16, 16) * 255).to(torch.uint8), TypeError, "/255"),
        (torch.full((2, 3, 16, 16), float("nan")), ValueError, "NaN"),
        (torch.rand(2, 3, 16, 16) * 2 - 1, ValueError, "un-normalised"),
        (torch.rand(0, 3, 16, 16), ValueError, "empty"),
        (torch.rand(2, 1, 16, 16), ValueError, "channels"),
        (torch.rand(2, 3, 16, 16).numpy(), TypeError, "torch.Tensor"),
    ],
)
def test_bad_images_get_clear_errors(tiny_resnet, x, error, message):
    subject = Subject(tiny_resnet, mean=[0.5] * 3, std=[0.25] * 3)
    with pytest.raises(error, match=message):
        subject.logits(x)


@pytest.mark.parametrize(("mean", "std"), [([0.5], [0.25]), ([0.5], [0.25, 0.5, 1.0])])
def test_a_single_mean_or_std_value_serves_every_channel(tiny_resnet, mean, std):
    subject = Subject(tiny_resnet, mean=mean, std=std)
    x = torch.rand(2, 3, 16, 16)
    expected = (x - 0.5) / torch.as_tensor(std).view(1, -1, 1, 1)
    torch.testing.assert_close(subject.normalize(x), expected)
    assert subject.logits(x).shape == (2, 10)


@pytest.mark.parametrize(("mean", "std", "what"), [([0.5, 0.5], None, "mean"), ([0.5], [0.25, 0.25], "std")])
def test_a_mean_or_std_of_the_wrong_length_says_how_to_fix_it(tiny_resnet, mean, std, what):
    subject = Subject(tiny_resnet, mean=mean, std=std)
    message = (f"{what} has 2 values but the images have 3 channels.*one value per channel, or a single value for "
               "all channels")
    with pytest.raises(ValueError, match=message):
        subject.logits(torch.rand(2, 3, 16, 16))


def test_bad_construction_is_refused(tiny_resnet):
    with pytest.raises(ValueError, match="role"):
        Subject(tiny_resnet, role="boss")
    with pytest.raises(ValueError, match="std"):
        Subject(tiny_resnet, mean=[0, 0, 0], std=[1, 0, 1])
    with pytest.raises(TypeError):
        Subject(lambda x: x)
    with pytest.raises(ValueError, match="model.to"):
        Subject(tiny_resnet, device="meta")


def test_capture_records_layers_and_always_removes_hooks(tiny_resnet):
    subject = Subject(tiny_resnet)
    with subject.capture(["layer1", "pool"]) as store:
        subject.logits(torch.rand(2, 3, 16, 16))
    assert store["layer1"].shape == (2, 4, 16, 16) and store["pool"].shape == (2, 16, 1, 1)
    assert not any(m._forward_hooks for m in tiny_resnet.modules())
    with pytest.raises(KeyError, match="layer1"):
        with subject.capture(["layer_1"]):
            pass
    assert not any(m._forward_hooks for m in tiny_resnet.modules())


def test_evaluate_counts_correct_predictions(tiny_world, tiny_resnet):
    _, test = tiny_world
    subject = Subject(tiny_resnet)
    result = subject.evaluate(test, batch_size=33)
    expected = float((subject.predict(test.images()) == test.targets()).float().mean())
    assert result["n"] == len(test) and result["accuracy"] == pytest.approx(expected)


def test_twin_is_the_gradient_source(tiny_resnet):
    twin = zoo.build("resnet", 10, seed=1, width=4, blocks=1)
    subject = Subject(tiny_resnet, twin=twin)
    assert subject.gradient_model is twin and subject.gradient_source == "twin"
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(subject.logits(x, use_twin=True), twin.eval()(x))
