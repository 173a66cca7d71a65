"""Attack cases ported from the peers' own test suites, run against kdscope's attacks.

Sources (read at these tags):
- Foolbox 3.3.4 (bethgelab/foolbox, v3.3.4): tests/conftest.py (`pytorch_simple_model`: the logits are the channel
  means of the image; its channel-flip and mean/std preprocessing variants), tests/test_attacks.py
  (`test_untargeted_attacks`, `test_targeted_attacks` and their attack lists), tests/test_attacks_raise.py
  (`test_targeted_attacks_call_raises_exception`) and tests/test_attacks_base.py (`test_call_one_epsilon`,
  `test_model_bounds`). Foolbox's attacks are mapped to kdscope's with Foolbox's default parameters (PGD: 40 steps of
  0.01/0.3 * eps with a random start; L2PGD: 50 steps of 0.025 * eps; the basic iterative methods: 10 steps of 0.2 *
  eps, no random start; FGM: one L2 step of eps).
- torchattacks 3.5.1 (Harry24k/adversarial-attacks-pytorch, v3.5.1): code_coverage/test_atks.py
  (`test_atks_on_cifar10`: every attack at its defaults, untargeted and targeted(random), must not raise accuracy),
  and torchattacks/attacks/{fgsm,pgd,pgdl2}.py for the bit-level comparisons.

Foolbox's tests run on 8 ImageNet samples shipped with Foolbox; here the same model runs on 8 ProbeWorld test images
and, when Foolbox is installed (the bench extra), also on Foolbox's own samples, average-pooled from 224 to 32 pixels
a side (the mean model's logits are the same channel means; CW on the full-size samples took a minute).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from kdscope import ProbabilityOutputError, Subject
from kdscope.attacks import ATTACKS, carlini_wagner, run
from kdscope.core.subject import RawInputModel, check_logits


class ChannelMean(nn.Module):
    """Foolbox tests/conftest.py `pytorch_simple_model`: logits = mean over height and width, one per channel.
    `flip` reverses the channel order first (the `flip_axis=-3` preprocessing variant)."""

    def __init__(self, flip: bool = False) -> None:
        super().__init__()
        self.flip = flip
        self.rejected_batches = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = x.flip(1)
        out = torch.mean(torch.mean(x, 3), 2)
        try:  # count the batches an every-batch probability check would have refused
            check_logits(out.detach())
        except ProbabilityOutputError:
            self.rejected_batches += 1
        return out


MEAN_SETUPS = ["plain/probeworld", "flip/probeworld", "mean-std/probeworld", "plain/foolbox-imagenet"]


@pytest.fixture(params=MEAN_SETUPS)
def mean_setup(request, tiny_world):
    """(Subject, images, labels) for Foolbox's mean model; labels are the model's own predictions, as in Foolbox's
    conftest (`y = fmodel(x).argmax(axis=-1)`), so clean accuracy is 100%."""
    variant, images = request.param.split("/")
    if images == "foolbox-imagenet":
        foolbox = pytest.importorskip("foolbox")
        x, _ = foolbox.samples(foolbox.PyTorchModel(ChannelMean().eval(), bounds=(0, 1)), dataset="imagenet",
                               batchsize=8)
        x = F.avg_pool2d(x.float(), 7)  # 224 -> 32 pixels a side: the same channel means, 49x cheaper to attack
    else:
        x = tiny_world[1].images(slice(0, 8))
    if variant == "mean-std":  # Foolbox's preprocessing=dict(mean=0.05 * arange(3), std=2 * ones(3), axis=-3)
        subject = Subject(ChannelMean(), name="mean", mean=[0.0, 0.05, 0.1], std=[2.0, 2.0, 2.0])
    else:
        subject = Subject(ChannelMean(flip=variant == "flip"), name="mean")
    return subject, x, subject.predict(x)


# Foolbox tests/test_attacks.py lists these four in both its untargeted `attacks` and its `targeted_attacks`:
# (Foolbox's attack and epsilon, kdscope run parameters, whether kdscope succeeds on every image).
FOOLBOX_ITERATIVE = [
    ("PGD() Linf(1.0)", dict(attack="pgd", eps=1.0, steps=40, step=0.01 / 0.3, random_start=True), True),
    ("L2PGD() L2(50.0)", dict(attack="pgd", norm="l2", eps=50.0, steps=50, step=0.025 * 50, random_start=True), True),
    ("LinfBasicIterativeAttack(abs_stepsize=0.2) Linf(1.0)",
     dict(attack="pgd", eps=1.0, steps=10, step=0.2, random_start=False), True),
    ("L2BasicIterativeAttack() L2(50.0)",
     dict(attack="pgd", norm="l2", eps=50.0, steps=10, step=0.2 * 50, random_start=False), True),
]

# Foolbox tests/test_attacks.py `attacks` (untargeted) that kdscope has. Foolbox asserts only that accuracy drops.
FOOLBOX_UNTARGETED = [
    *FOOLBOX_ITERATIVE,
    ("FGSM() Linf(100.0)", dict(attack="fgsm", eps=100.0), True),
    ("FGM() L2(100.0)", dict(attack="pgd", norm="l2", eps=100.0, steps=1, step=100.0, random_start=False), True),
    ("L2CarliniWagnerAttack(binary_search_steps=11, steps=5)",
     dict(attack="cw", binary_search_steps=11, steps=5), False),
]

# Foolbox tests/test_attacks.py `targeted_attacks` that kdscope has; target = (y + 1) % classes as there.
FOOLBOX_TARGETED = [
    ("L2CarliniWagnerAttack(binary_search_steps=2, steps=100, stepsize=0.05, initial_const=1e1)",
     dict(attack="cw", binary_search_steps=2, steps=100, lr=0.05, initial_const=10.0), False),
    *FOOLBOX_ITERATIVE,
]


def _assert_in_box_and_ball(result, x: torch.Tensor, params: dict) -> None:
    assert result.adversarial.shape == x.shape
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0
    if "eps" in params:
        bound = result.l2 if params.get("norm") == "l2" else result.linf
        assert float(bound.max()) <= params["eps"] * (1 + 1e-5)


@pytest.mark.parametrize("name, params, every_image", FOOLBOX_UNTARGETED, ids=[c[0] for c in FOOLBOX_UNTARGETED])
def test_foolbox_untargeted_attacks_on_the_mean_model(mean_setup, name, params, every_image):
    """Foolbox tests/test_attacks.py::test_untargeted_attacks on tests/conftest.py's mean model: accuracy (100% on the
    clean images) must drop. The gradient attacks fool every image; CW with 5 Adam steps moves at most ~0.05 per pixel
    per step, too little for the images whose channel means are far apart, so like Foolbox's it fools only some."""
    subject, x, y = mean_setup
    before = x.clone()
    result = run(subject, x, y, **params)
    assert torch.equal(x, before)
    assert bool(result.success.all()) if every_image else bool(result.success.any())
    assert torch.equal(result.success, subject.predict(result.adversarial) != y)
    _assert_in_box_and_ball(result, x, params)


@pytest.mark.parametrize("name, params, every_image", FOOLBOX_TARGETED, ids=[c[0] for c in FOOLBOX_TARGETED])
def test_foolbox_targeted_attacks_on_the_mean_model(mean_setup, name, params, every_image):
    """Foolbox tests/test_attacks.py::test_targeted_attacks on the mean model, targets (y + 1) % 3: no image is
    classified as its target before, some must be after (all of them for the gradient attacks).

    This also checks that an attack runs when the crafted outputs look like probabilities: kdscope judges that once
    per Subject, on the first (clean) batch. The channel means of crafted images can be non-negative rows summing
    to 1; the model counts the batches an every-batch check would have refused."""
    subject, x, y = mean_setup
    target = (y + 1) % 3
    assert not bool((subject.predict(x) == target).any())
    result = run(subject, x, y, target=target, **params)
    assert bool(result.success.all()) if every_image else bool(result.success.any())
    assert torch.equal(result.success, subject.predict(result.adversarial) == target)
    assert result.params["targeted"]
    _assert_in_box_and_ball(result, x, params)


def test_targeted_pgd_on_the_mean_model_runs_through_probability_looking_outputs(tiny_world):
    """Foolbox tests/test_attacks.py::test_targeted_attacks, fa.PGD() at Linf(1.0), on the mean model: one of the
    batches it crafts has channel means that are non-negative and sum to 1 in every row. Judged on every batch this
    attack would stop with ProbabilityOutputError; judged once per Subject on the clean batch it runs."""
    model = ChannelMean()
    subject = Subject(model, name="mean")
    x = tiny_world[1].images(slice(0, 8))
    y = subject.predict(x)
    result = run(subject, x, y, target=(y + 1) % 3, attack="pgd", eps=1.0, steps=40, step=0.01 / 0.3)
    assert model.rejected_batches >= 1
    assert bool(result.success.all())


def test_the_probability_rule_cuts_both_ways_on_the_mean_model():
    """The once-per-Subject rule on Foolbox's mean model: a first batch whose channel means sum to 1 is refused as
    probabilities (a mean model on such images is indistinguishable from a softmax), and outputs='logits' says
    otherwise."""
    x = torch.tensor([0.2, 0.3, 0.5]).view(1, 3, 1, 1).expand(2, 3, 8, 8).contiguous()
    y = torch.tensor([2, 2])
    with pytest.raises(ProbabilityOutputError):
        run(Subject(ChannelMean(), name="mean"), x, y, attack="fgsm", eps=0.1)
    result = run(Subject(ChannelMean(), name="mean", outputs="logits"), x, y, attack="fgsm", eps=0.1)
    assert bool(result.success.all())


def test_cw_with_unreachable_confidence_returns_the_clean_images(mean_setup):
    """Foolbox tests/test_attacks.py lists L2CarliniWagnerAttack(binary_search_steps=3, steps=20, confidence=2.0)
    for the mean model, whose logits (channel means of [0, 1] images) differ by at most 1: a margin of 2 cannot be
    reached. Foolbox 3.3.4 then returns all-zero images (its `best_advs` starts at zeros), which its test counts as
    adversarial because the black image is classified as class 0. kdscope returns the clean image where no
    kappa-confident adversarial was found and reports no success: the case is ported with the honest expectation."""
    subject, x, y = mean_setup
    result = run(subject, x, y, attack="cw", binary_search_steps=3, steps=20, kappa=2.0)
    assert torch.equal(result.adversarial, x)
    assert not bool(result.success.any())
    assert float(result.l2.max()) == 0.0


# Foolbox tests/test_attacks_raise.py and tests/test_attacks_base.py, for every kdscope attack.
QUICK = {"fgsm": {}, "pgd": {"steps": 2}, "cw": {"steps": 2, "binary_search_steps": 1},
         "penalized": {"steps": 2}, "square": {"queries": 5}}
assert set(QUICK) == set(ATTACKS)


@pytest.mark.parametrize("attack", sorted(QUICK))
def test_targets_for_another_batch_size_are_refused(trained_tiny_teacher, tiny_world, attack):
    """Foolbox tests/test_attacks_raise.py::test_targeted_attacks_call_raises_exception: a targeted criterion with
    twice as many target classes as images is a ValueError."""
    x, y = tiny_world[1].images(slice(0, 4)), tiny_world[1].targets(slice(0, 4))
    target = (y + 1) % 10
    with pytest.raises(ValueError, match="one class index per image"):
        run(trained_tiny_teacher, x, y, attack=attack, target=torch.cat([target, target]), **QUICK[attack])


@pytest.mark.parametrize("attack", sorted(QUICK))
@pytest.mark.parametrize("outside", ["below", "above"])
def test_images_outside_the_bounds_are_refused(trained_tiny_teacher, tiny_world, attack, outside):
    """Foolbox tests/test_attacks_base.py::test_model_bounds: inputs 0.1 below the lower or above the upper bound
    are refused (an AssertionError in Foolbox, a ValueError naming the fix in kdscope)."""
    x, y = tiny_world[1].images(slice(0, 4)), tiny_world[1].targets(slice(0, 4))
    x = x * 0.0 - 0.1 if outside == "below" else x * 0.0 + 1.1
    with pytest.raises(ValueError, match="images must be raw values"):
        run(trained_tiny_teacher, x, y, attack=attack, **QUICK[attack])


@pytest.mark.parametrize("attack", sorted(QUICK))
def test_result_shapes(trained_tiny_teacher, tiny_world, attack):
    """Foolbox tests/test_attacks_base.py::test_call_one_epsilon: the adversarial batch has the input's shape and
    success is one boolean per image (likewise the norms)."""
    x, y = tiny_world[1].images(slice(0, 4)), tiny_world[1].targets(slice(0, 4))
    result = run(trained_tiny_teacher, x, y, attack=attack, **QUICK[attack])
    assert result.adversarial.shape == x.shape and result.adversarial.dtype == x.dtype
    assert result.success.shape == (4,) and result.success.dtype == torch.bool
    assert result.linf.shape == (4,) and result.l2.shape == (4,)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("mode", ["default", "targeted(random)"])
def test_every_attack_at_its_defaults_does_not_raise_accuracy(trained_tiny_teacher, tiny_world, attack, mode):
    """torchattacks code_coverage/test_atks.py::test_atks_on_cifar10: every attack at its default parameters, then
    in targeted mode with random targets (torchattacks' set_mode_targeted_random: a class other than the label),
    leaves accuracy on the true labels at most the clean accuracy. Five images, as there (n_examples=5)."""
    x, y = tiny_world[1].images(slice(0, 5)), tiny_world[1].targets(slice(0, 5))
    target = None
    if mode != "default":
        offset = torch.randint(1, 10, (5,), generator=torch.Generator().manual_seed(0))
        target = (y + offset) % 10
    clean = float((trained_tiny_teacher.predict(x) == y).float().mean())
    result = run(trained_tiny_teacher, x, y, attack=attack, target=target)
    robust = float((trained_tiny_teacher.predict(result.adversarial) == y).float().mean())
    assert clean >= robust


# torchattacks: bit-level equality.
@pytest.fixture(scope="module")
def teacher_batch(tiny_world):
    return tiny_world[1].images(slice(0, 16)), tiny_world[1].targets(slice(0, 16))


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_fgsm_is_bit_identical_to_torchattacks(trained_tiny_teacher, teacher_batch, targeted, eps):
    """torchattacks/attacks/fgsm.py (3.5.1): the same images bit for bit (tests/attacks compares them to 1e-6)."""
    x, y = teacher_batch
    peer = torchattacks.FGSM(RawInputModel(trained_tiny_teacher).eval(), eps=eps)
    target = (y + 3) % 10 if targeted else None
    if targeted:
        peer.set_mode_targeted_by_label(quiet=True)
    ours = run(trained_tiny_teacher, x, y, attack="fgsm", target=target, eps=eps).adversarial
    assert torch.equal(ours, peer(x, target if targeted else y))


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("random_start, seed", [(False, 0), (True, 0), (True, 3)])
def test_pgd_linf_is_bit_identical_to_torchattacks_on_the_same_seed(trained_tiny_teacher, teacher_batch, targeted,
                                                                     random_start, seed):
    """torchattacks/attacks/pgd.py (3.5.1): same images bit for bit, with or without the random start. torchattacks
    draws its start from the global generator (`uniform_(-eps, eps)` after torch.manual_seed(seed)); kdscope draws
    the same numbers from its own generator seeded with `seed`, and rounds them the same way. The loss reduction
    differs (torchattacks: batch mean; kdscope: sum, so an image's gradient does not depend on its batch), which the
    sign step does not see. tests/attacks covers only random_start=False, to 1e-5."""
    x, y = teacher_batch
    eps, step = 8 / 255, 2 / 255
    target = (y + 3) % 10 if targeted else None
    peer = torchattacks.PGD(RawInputModel(trained_tiny_teacher).eval(), eps=eps, alpha=step, steps=10,
                            random_start=random_start)
    if targeted:
        peer.set_mode_targeted_by_label(quiet=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        theirs = peer(x, target if targeted else y)
    ours = run(trained_tiny_teacher, x, y, attack="pgd", target=target, eps=eps, step=step, steps=10,
               random_start=random_start, seed=seed)
    assert torch.equal(ours.adversarial, theirs)


def _mean_loss_gradient_norms(subject: Subject, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image norms of the gradient of torchattacks' loss, the batch-mean cross-entropy."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(RawInputModel(subject).eval()(x), y), x)
    return grad.flatten(1).norm(dim=1)


def test_pgd_l2_is_bit_identical_to_torchattacks_for_a_power_of_two_batch(trained_tiny_teacher, teacher_batch):
    """torchattacks/attacks/pgdl2.py (3.5.1) without a random start, 16 images, 10 steps: the same images bit for bit.

    kdscope takes the step as step * (g / (||g|| + 1e-10)) in torchattacks' order; `(step * g) / ||g||` (kdscope
    before) rounds differently, and a ReLU network amplified the last-bit differences (0.0026 on one of 64 images of
    a 32x32 ProbeWorld ResNet at eps 1, measured; 0.018 on 2 of 64 in the README's report). What remains different
    is deliberate: kdscope differentiates the summed loss (an image's attack does not depend on its batch),
    torchattacks the batch mean. For a batch of 2^k the two gradients differ by an exact power of two, so the steps
    agree bit for bit unless torchattacks' 1e-10 rounds differently against its smaller norm, which needs a
    mean-loss gradient norm under 2^-9 (then the images differ in the last bits)."""
    x, y = teacher_batch
    assert float(_mean_loss_gradient_norms(trained_tiny_teacher, x, y).min()) >= 2**-9, "precondition"
    peer = torchattacks.PGDL2(RawInputModel(trained_tiny_teacher).eval(), eps=0.5, alpha=0.1, steps=10,
                              random_start=False)
    ours = run(trained_tiny_teacher, x, y, attack="pgd", norm="l2", eps=0.5, step=0.1, steps=10, random_start=False)
    assert torch.equal(ours.adversarial, peer(x, y))


def test_pgd_l2_agrees_with_torchattacks_to_rounding_for_other_batches(trained_tiny_teacher, tiny_world):
    """torchattacks/attacks/pgdl2.py (3.5.1), 15 images (not a power of two) and 20 steps at eps 1: the batch mean
    scales the gradient by a rounded 1/15, so images differ in the last bits, success not at all. (On a 16x16 ProbeWorld
    ResNet of width 8, at eps 2 and 20 steps, 6 of 100 images ended up to 0.022 apart through the network's kinks;
    success was equal in all 15 settings measured.)"""
    x, y = tiny_world[1].images(slice(16, 31)), tiny_world[1].targets(slice(16, 31))
    peer = torchattacks.PGDL2(RawInputModel(trained_tiny_teacher).eval(), eps=1.0, alpha=0.1, steps=20,
                              random_start=False)
    theirs = peer(x, y)
    ours = run(trained_tiny_teacher, x, y, attack="pgd", norm="l2", eps=1.0, step=0.1, steps=20, random_start=False)
    torch.testing.assert_close(ours.adversarial, theirs, atol=1e-5, rtol=0)
    assert torch.equal(ours.success, trained_tiny_teacher.predict(theirs) != y)


def test_pgd_l2_random_starts_differ_by_design_but_success_agrees(trained_tiny_teacher, tiny_world):
    """torchattacks/attacks/pgdl2.py (3.5.1) with random_start=True draws the same normal direction and uniform u as
    kdscope on the same seed, but puts the start at radius eps * u; kdscope (like Foolbox's L2PGD) at eps * u^(1/d),
    uniform in the L2 ball. Images differ; success rates stay within 3 of 64 images over three seeds."""
    x, y = tiny_world[1].images(slice(0, 64)), tiny_world[1].targets(slice(0, 64))
    model = RawInputModel(trained_tiny_teacher).eval()
    for seed in range(3):
        peer = torchattacks.PGDL2(model, eps=0.25, alpha=0.05, steps=10, random_start=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            theirs = peer(x, y)
        ours = run(trained_tiny_teacher, x, y, attack="pgd", norm="l2", eps=0.25, step=0.05, steps=10, seed=seed)
        theirs_fooled = int((trained_tiny_teacher.predict(theirs) != y).sum())
        assert abs(int(ours.success.sum()) - theirs_fooled) <= 3
        assert not torch.equal(ours.adversarial, theirs)


# Carlini-Wagner against the exact minimal L2 perturbation of a linear model.
def _two_class_linear(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    weight = linear[1].weight.detach()
    return linear, (weight[0] - weight[1]).double()


def _boxed_optimum(x: torch.Tensor, gap: torch.Tensor, a: torch.Tensor, towards: torch.Tensor) -> torch.Tensor:
    """Exact min ||d|| with a.d = towards * |gap| and 0 <= x + d <= 1 (a convex QP): by KKT d = clip(lam * towards *
    a, -x, 1 - x) for the lam >= 0 that meets the constraint, found by bisection (a.d is monotone in lam)."""
    norms = []
    for xi, g, s in zip(x.double().flatten(1), gap.double().abs(), towards.double()):
        def reach(lam: float, xi=xi, s=s) -> float:
            return float(s * (a @ torch.clamp(lam * s * a, -xi, 1 - xi)))
        low, high = 0.0, 1.0
        while reach(high) < g:
            high *= 2
        for _ in range(200):
            low, high = ((low + high) / 2, high) if reach((low + high) / 2) < g else (low, (low + high) / 2)
        norms.append(float(torch.clamp(high * s * a, -xi, 1 - xi).norm()))
    return torch.tensor(norms, dtype=torch.float64)


def test_cw_reaches_the_closed_form_minimal_l2_to_007_percent():
    """The minimal L2 adversarial perturbation of a two-class linear model is the distance from x to the decision
    hyperplane, |z0 - z1| / ||w0 - w1||, when the closest point lies inside the box. The images here sit at
    distances 0.05 to 0.3 from the hyperplane, around 0.5, so it does. kdscope's CW (12 binary-search steps x 300
    Adam steps at lr 0.003) lands 4e-6 to 3.6e-4 above the optimum (measured); the assertion allows 7e-4 (0.07%),
    twice the worst measured, and never below the optimum. Adam's last steps scale with lr: at the default lr 0.01
    the same images land up to 0.4% (12 x 300) or 0.9% (the 9 x 100 defaults) above."""
    linear, a = _two_class_linear()
    with torch.no_grad():
        linear[1].bias.copy_(torch.tensor([0.0, float(a.sum()) * 0.5]))  # the hyperplane passes through 0.5 * ones
    direction = (a / a.norm()).float()
    distance = torch.tensor([0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
    side = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    u = 0.5 + 0.05 * torch.randn(6, 16)
    on_plane = u - ((u - 0.5) @ direction).view(-1, 1) * direction
    x = (on_plane + (side * distance).view(-1, 1) * direction).view(6, 1, 4, 4)
    with torch.no_grad():
        logits = linear(x)
    y = logits.argmax(1)
    expected = ((logits[:, 0] - logits[:, 1]).abs().double() / a.norm())
    closest = x.flatten(1) - (side * expected.float()).view(-1, 1) * direction
    assert float(closest.min()) > 0 and float(closest.max()) < 1, "the closed form needs an interior optimum"
    result = carlini_wagner(Subject(linear, name="linear"), x, y, steps=300, lr=0.003, binary_search_steps=12,
                            initial_const=0.1)
    assert bool(result.success.all())
    relative = (result.l2.double() - expected) / expected
    assert float(relative.min()) >= -1e-5 and float(relative.max()) <= 7e-4, relative.tolist()


def test_cw_against_the_box_constrained_optimum_of_tests_attacks_linear_model():
    """tests/attacks/test_attacks.py::test_cw_finds_the_closed_form_minimal_l2_on_a_linear_model compares CW to the
    hyperplane distance with a 5% tolerance, but there the closest point leaves the [0, 1] box for all six images
    (pixels down to -0.19): the true optimum is the box-constrained one, 0.08% to 2.6% farther. Against that optimum
    (exact, by bisection on the KKT conditions) kdscope's CW at lr 0.01, 12 x 300 steps lands 0.8% to 1.7% above
    (measured): the pixels pinned at the box edge sit where tanh saturates and move slowly. Asserted: within 2.5%,
    never below."""
    linear, a = _two_class_linear()
    x = 0.4 + 0.2 * torch.rand(6, 1, 4, 4)
    with torch.no_grad():
        logits = linear(x)
    y = logits.argmax(1)
    gap = logits[:, 0] - logits[:, 1]
    towards = torch.where(y == 0, -1.0, 1.0)  # lower z0 - z1 when the true class is 0, raise it otherwise
    optimum = _boxed_optimum(x, gap, a, towards)
    hyperplane = gap.abs().double() / a.norm()
    assert bool((optimum > hyperplane * (1 + 5e-4)).all()), "the box binds for every image"
    result = carlini_wagner(Subject(linear, name="linear"), x, y, steps=300, lr=0.01, binary_search_steps=12,
                            initial_const=0.1)
    assert bool(result.success.all())
    relative = (result.l2.double() - optimum) / optimum
    assert float(relative.min()) >= -1e-5 and float(relative.max()) <= 0.025, relative.tolist()
