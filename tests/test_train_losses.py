import math

import pytest
import torch

from pyterrier_shallow.train import losses as L


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


LOGITS = [[2.0, -1.0, 0.5, -3.0], [-0.5, 1.5, 0.0, 2.0]]


def test_bce_matches_hand_computation():
    expected = 0.0
    for row in LOGITS:
        terms = math.log(_sigmoid(row[0])) + sum(math.log(1 - _sigmoid(s)) for s in row[1:])
        expected += -terms / len(row)
    expected /= len(LOGITS)
    assert L.bce_loss(torch.tensor(LOGITS)).item() == pytest.approx(expected, rel=1e-6)


def test_gbce_matches_hand_computation():
    k, pool, t = 3, 100, 0.75
    alpha = k / pool
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    expected = 0.0
    for row in LOGITS:
        terms = beta * math.log(_sigmoid(row[0])) + sum(math.log(1 - _sigmoid(s)) for s in row[1:])
        expected += -terms / len(row)
    expected /= len(LOGITS)
    assert L.gbce_loss(torch.tensor(LOGITS), pool, t=t).item() == pytest.approx(expected, rel=1e-6)


def test_gbce_per_query_pool_sizes():
    logits = torch.tensor(LOGITS)
    both = L.gbce_loss(logits, torch.tensor([10.0, 1000.0]), t=0.5)
    first = L.gbce_loss(logits[:1], 10, t=0.5)
    second = L.gbce_loss(logits[1:], 1000, t=0.5)
    assert both.item() == pytest.approx((first.item() + second.item()) / 2, rel=1e-6)


def test_gbce_beta_limits():
    # beta = alpha * (t (1 - 1/alpha) + 1/alpha) = 1 - t (1 - alpha)
    assert L.gbce_beta(4, 100, 0.0).item() == pytest.approx(1.0)
    assert L.gbce_beta(4, 100, 1.0).item() == pytest.approx(0.04)
    assert L.gbce_beta(4, 100, 0.75).item() == pytest.approx(1 - 0.75 * 0.96)
    assert L.gbce_beta(4, 4, 0.75).item() == pytest.approx(1.0)  # every candidate sampled: alpha = 1
    assert L.gbce_beta(4, 2, 0.75).item() == pytest.approx(1.0)  # pools shorter than k count as k


def test_gbce_reduces_to_bce_when_beta_is_one():
    logits = torch.tensor(LOGITS)
    assert L.gbce_loss(logits, 1000, t=0.0).item() == pytest.approx(L.bce_loss(logits).item(), rel=1e-6)
    assert L.gbce_loss(logits, 3, t=1.0).item() == pytest.approx(L.bce_loss(logits).item(), rel=1e-6)
    assert L.gbce_loss(logits, 1000, t=0.75).item() != pytest.approx(L.bce_loss(logits).item(), rel=1e-3)


def test_softmax_ce_matches_hand_computation():
    expected = sum(-math.log(math.exp(r[0]) / sum(math.exp(s) for s in r)) for r in LOGITS) / len(LOGITS)
    assert L.softmax_ce_loss(torch.tensor(LOGITS)).item() == pytest.approx(expected, rel=1e-6)


def test_margin_mse_matches_hand_computation():
    teacher = [[1.0, 0.0, 2.0, -1.0], [0.5, 0.5, 1.0, -2.0]]
    errors = [
        ((s[0] - s[j]) - (t[0] - t[j])) ** 2 for s, t in zip(LOGITS, teacher, strict=True) for j in range(1, 4)
    ]
    value = L.margin_mse_loss(torch.tensor(LOGITS), torch.tensor(teacher)).item()
    assert value == pytest.approx(sum(errors) / len(errors), rel=1e-6)
    assert L.margin_mse_loss(torch.tensor(LOGITS), torch.tensor(LOGITS) + 5.0).item() == pytest.approx(0.0, abs=1e-10)


def test_soft_label_is_kl_divergence():
    teacher = torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.5, 0.5, 1.0, -2.0]])
    student = torch.tensor(LOGITS)
    p = torch.softmax(teacher / 2.0, dim=1)
    q = torch.softmax(student / 2.0, dim=1)
    expected = (p * (p.log() - q.log())).sum(dim=1).mean()
    assert L.soft_label_loss(student, teacher, temperature=2.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert L.soft_label_loss(teacher, teacher + 3.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(L.LOSSES))
@pytest.mark.parametrize("scale", [100.0, -100.0, 1e4])
def test_extreme_logits_give_finite_values_and_gradients(name, scale):
    logits = (torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]) * scale).requires_grad_(True)
    loss = L.make_loss(name)
    value = loss(logits, pool_sizes=torch.tensor([100.0, 3.0]), teacher_scores=torch.flip(logits.detach(), [1]))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_loss_decreases_along_its_gradient():
    logits = torch.tensor(LOGITS, requires_grad=True)
    loss = L.GBCELoss(t=0.75)
    before = loss(logits, pool_sizes=torch.tensor([50.0, 50.0]))
    before.backward()
    with torch.no_grad():
        after = loss(logits - 0.1 * logits.grad, pool_sizes=torch.tensor([50.0, 50.0]))
    assert after < before


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="queries, 1 \\+ k"):
        L.bce_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="queries, 1 \\+ k"):
        L.softmax_ce_loss(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="t must lie"):
        L.GBCELoss(t=1.5)
    with pytest.raises(ValueError, match="pool_sizes"):
        L.GBCELoss()(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="teacher_scores"):
        L.MarginMSELoss()(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must match"):
        L.margin_mse_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="unknown loss"):
        L.make_loss("hinge")
    with pytest.raises(ValueError, match="temperature"):
        L.SoftLabelLoss(temperature=0)


def test_describe_and_teacher_flags():
    assert L.make_loss("gbce", t=0.5).describe() == {"name": "gbce", "t": 0.5}
    assert L.make_loss("soft-label", temperature=2.0).describe() == {"name": "soft-label", "temperature": 2.0}
    assert [name for name, cls in sorted(L.LOSSES.items()) if cls.needs_teacher] == ["margin-mse", "soft-label"]
