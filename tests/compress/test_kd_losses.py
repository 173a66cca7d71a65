import numpy as np
import pytest
import torch

from kdscope.compress import distillation_loss, logit_l2, soft_kl


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


STUDENT = np.array([[2.0, -1.0, 0.5], [-3.0, -2.0, -2.5]])
TEACHER = np.array([[1.0, 0.0, 3.0], [-1.0, -4.0, -2.0]])
LABELS = np.array([2, 0])


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_hinton_kd_equals_the_hand_computation(temperature):
    p, q = _softmax(TEACHER / temperature), _softmax(STUDENT / temperature)
    kl = (p * np.log(p / q)).sum(1).mean()
    ce = -np.log(_softmax(STUDENT)[np.arange(2), LABELS]).mean()
    expected = 0.3 * ce + 0.7 * temperature**2 * kl
    got = distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS),
                            kind="kl", temperature=temperature, alpha=0.3)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_kd_gradient_is_t_times_the_soft_probability_gap():
    """d/dz_s [a CE + (1-a) T^2 KL] = a (q - y) / N + (1-a) T (q_T - p_T) / N: the T^2 factor keeps it O(1)."""
    temperature, alpha = 4.0, 0.25
    student = torch.tensor(STUDENT, requires_grad=True)
    distillation_loss(student, torch.tensor(TEACHER), torch.tensor(LABELS), temperature=temperature,
                      alpha=alpha).backward()
    onehot = np.eye(3)[LABELS]
    expected = (alpha * (_softmax(STUDENT) - onehot)
                + (1 - alpha) * temperature * (_softmax(STUDENT / temperature) - _softmax(TEACHER / temperature))) / 2
    assert np.allclose(student.grad.numpy(), expected, atol=1e-6)


def test_reverse_kl_is_mode_seeking_kl_of_student_to_teacher():
    p, q = _softmax(TEACHER / 2.0), _softmax(STUDENT / 2.0)
    expected = 4.0 * (q * np.log(q / p)).sum(1).mean()
    assert float(soft_kl(torch.tensor(STUDENT), torch.tensor(TEACHER), 2.0, reverse=True)) == pytest.approx(expected)
    assert float(soft_kl(torch.tensor(TEACHER), torch.tensor(TEACHER), 2.0, reverse=True)) == pytest.approx(0.0)


def test_logit_matching_is_squared_distance_per_image():
    expected = ((TEACHER - STUDENT) ** 2).sum(1).mean()
    assert float(logit_l2(torch.tensor(STUDENT), torch.tensor(TEACHER))) == pytest.approx(expected)
    ce = -np.log(_softmax(STUDENT)[np.arange(2), LABELS]).mean()
    got = distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS), kind="logits",
                            alpha=0.5)
    assert float(got) == pytest.approx(0.5 * ce + 0.5 * expected)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="reverse_kl"):
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), kind="js")
