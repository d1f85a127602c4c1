"""Distillation losses against hand computations, and one distillation step."""
import math

import pytest
import torch
from torch.nn import functional as F

from ocular_utils.compression import distillation as distill
from ocular_utils.models.networks import build_model


def test_kd_loss_hand_computed():
    s = torch.tensor([[2.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([0])
    T, alpha = 2.0, 0.25
    ps = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]  # softmax(s / T)
    pt = [ps[1], ps[0]]  # softmax(t / T)
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))
    expected = alpha * ce + (1 - alpha) * T**2 * kl
    assert distill.kd_loss(s, t, y, T, alpha).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_batchmean_and_reduces_to_ce():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    assert distill.kd_loss(s, t, y, 3.0, 1.0).item() == pytest.approx(F.cross_entropy(s, y).item())
    soft = distill.kd_loss(s, t, y, 3.0, 0.0)
    per_sample = [distill.kd_loss(s[i:i + 1], t[i:i + 1], y[i:i + 1], 3.0, 0.0) for i in range(6)]
    assert soft.item() == pytest.approx(torch.stack(per_sample).mean().item(), rel=1e-5)
    with pytest.raises(ValueError):
        distill.kd_loss(s, t, y, 0.0, 0.5)


def test_embedding_loss_bounds():
    e = torch.randn(4, 8)
    assert distill.embedding_loss(e, 3 * e).item() == pytest.approx(0, abs=1e-6)
    assert distill.embedding_loss(e, -e).item() == pytest.approx(2, abs=1e-6)
    with pytest.raises(ValueError, match="project the student"):
        distill.embedding_loss(e, torch.randn(4, 16))


def test_relational_loss_is_zero_for_the_same_structure():
    e = torch.randn(6, 8)
    assert distill.relational_loss(e, 2 * e).item() == pytest.approx(0, abs=1e-6)
    assert distill.relational_loss(e, torch.randn(6, 8)).item() > 0


@pytest.mark.parametrize("loss", ["logit", "embedding", "both", "relational"])
def test_a_distillation_step_lowers_the_loss(loss):
    torch.manual_seed(0)
    teacher = build_model("resnet18", 4, 16).eval()
    student = build_model("mobilenet_v3_small", 4, 8)
    projection = distill.Projection(8, 16)
    loss_fn = distill.distillation_loss(teacher, loss, 4.0, 0.5, 1.0, projection)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    optimizer = torch.optim.Adam(list(student.parameters()) + list(projection.parameters()), lr=1e-3)
    student.eval()  # fixed BatchNorm statistics so the two evaluations see the same function
    first, _ = loss_fn(student, x, y)
    for _ in range(5):
        value, _ = loss_fn(student, x, y)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    last, _ = loss_fn(student, x, y)
    assert last.item() < first.item()
    assert not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="unknown distillation loss"):
        distill.distillation_loss(teacher, "attention")


def test_teacher_from_another_split_is_refused(tiny_data, tmp_path):
    from ocular_utils.models.files import save_model

    teacher = build_model("resnet18", tiny_data.split.num_classes, 8)
    save_model(teacher, tmp_path / "t", identities="not-this-split")
    with pytest.raises(ValueError, match="trained on other identities"):
        distill.train_student(tiny_data, tmp_path / "t", tmp_path / "s", "mobilenet_v3_small", "logit",
                              distill.DistillationConfig(), {"images": 16})
