"""Knowledge distillation from the trained ResNet50 teacher into compact students.

* Logit KD (Hinton): ``alpha * CE(student, y) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``,
  KL with ``batchmean`` reduction (as torchdistill's KDLoss).
* Embedding KD: ``1 - cos(student embedding, teacher embedding)`` on L2-normalized embeddings, through a
  learned linear projection when the widths differ.
* Relational KD (Park et al., 2019): distance and angle structure of the batch's embeddings.

Student and teacher share the training identities, so their logits are comparable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..core.config import Settings
from ..models.files import load_model, read_spec
from ..models.networks import CLASSIFIER_ATTRIBUTE, OcularNet, build_model
from ..training.budget import RunBudget
from ..training.loop import TrainConfig, TrainResult
from ..training.recipes import fit_to_budget

LOSSES = ("none", "logit", "embedding", "both", "relational")
KD_STUDENT = "KD student"
NO_TEACHER = "student, no teacher"


def student_family(loss: str) -> str:
    """The family of a student trained with ``loss`` (``none`` is the no-teacher control)."""
    return NO_TEACHER if loss == "none" else KD_STUDENT


def _default_student_training() -> TrainConfig:
    # constant after warm-up (budget.warmup_fraction) on the trunk; each point of the budget ends with a decay
    # branch to zero (warmup-stable-decay, training.budget)
    return TrainConfig(optimizer="adamw", lr=0.002, weight_decay=0.05, warmup_epochs=0.0, schedule="constant")


@dataclass
class DistillationConfig(Settings):
    """The ``distillation`` section: students x losses, the KD hyper-parameters and the students' training."""

    students: list = field(default_factory=lambda: ["mobilenet_v2", "resnet18"])
    losses: list = field(default_factory=lambda: ["none", "logit", "embedding"])
    temperature: float = 4.0
    alpha: float = 0.5
    embedding_weight: float = 1.0
    embedding_dim: int | None = None  # the student's embedding width; None: the teacher's
    train: TrainConfig = field(default_factory=_default_student_training)

    def __post_init__(self):
        for student in self.students:
            if student not in CLASSIFIER_ATTRIBUTE:
                raise ValueError(f"distillation.students: unknown network {student!r}; expected some of "
                                 f"{sorted(CLASSIFIER_ATTRIBUTE)}")
        for loss in self.losses:
            if loss not in LOSSES:
                raise ValueError(f"distillation.losses: unknown loss {loss!r}; expected some of {LOSSES}")

    def recipe(self, **train) -> dict:
        """The settings one student run uses (not the grid of students and losses); ``train`` overrides training."""
        recipe = {k: v for k, v in self.to_dict().items() if k not in ("students", "losses")}
        return recipe | {"train": recipe["train"] | train}


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float = DistillationConfig.temperature, alpha: float = DistillationConfig.alpha
            ) -> torch.Tensor:
    """Hinton's distillation loss: ``alpha * CE + (1 - alpha) * T^2 * KL(teacher || student)`` (batchmean)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (got {temperature})")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] (got {alpha})")
    hard = F.cross_entropy(student_logits, targets)
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
    return alpha * hard + (1 - alpha) * temperature**2 * soft


def embedding_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between L2-normalized embeddings of equal width (0 identical, 2 opposite)."""
    if student_embedding.shape != teacher_embedding.shape:
        raise ValueError(f"embedding shapes differ: {tuple(student_embedding.shape)} vs "
                         f"{tuple(teacher_embedding.shape)}; project the student first")
    cosine = (F.normalize(student_embedding, dim=1) * F.normalize(teacher_embedding, dim=1)).sum(1)
    return (1 - cosine).mean()


def _pairwise_distances(embedding: torch.Tensor) -> torch.Tensor:
    distances = torch.cdist(embedding, embedding)
    positive = distances[distances > 0]
    return distances / (positive.mean() if positive.numel() else 1.0)


def relational_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor,
                    distance_weight: float = 1.0, angle_weight: float = 2.0) -> torch.Tensor:
    """Relational KD: Huber loss between normalized pairwise distances and between triplet angles."""
    distance = F.smooth_l1_loss(_pairwise_distances(student_embedding), _pairwise_distances(teacher_embedding))

    def angles(e: torch.Tensor) -> torch.Tensor:
        difference = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(difference, difference.transpose(1, 2)).view(-1)

    angle = F.smooth_l1_loss(angles(student_embedding), angles(teacher_embedding))
    return distance_weight * distance + angle_weight * angle


class Projection(nn.Module):
    """Learned linear map from the student's embedding width to the teacher's (identity if equal)."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.map = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x)


def distillation_loss(teacher: nn.Module, loss: str = "logit", temperature: float = DistillationConfig.temperature,
                      alpha: float = DistillationConfig.alpha,
                      embedding_weight: float = DistillationConfig.embedding_weight,
                      projection: Projection | None = None) -> Callable:
    """A training loss ``(student, x, y) -> (loss, logits)`` for :func:`ocular_utils.training.fit`.

    ``loss``: ``none`` (cross-entropy only: the no-teacher control), ``logit``, ``embedding``
    (``CE + embedding_weight * (1 - cos)``), ``both`` (logit KD + embedding term) or ``relational``
    (``CE + embedding_weight * RKD``). Freezes ``teacher`` in place (eval mode, ``requires_grad`` off):
    it is the frozen teacher from then on.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown distillation loss {loss!r}; expected one of {LOSSES}")
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    projection = projection or Projection(1, 1)

    def loss_fn(student: nn.Module, x: torch.Tensor, y: torch.Tensor):
        logits, embedding = student(x, return_embedding=True)
        if loss == "none":
            return F.cross_entropy(logits, y), logits
        with torch.no_grad():
            teacher_logits, teacher_embedding = teacher(x, return_embedding=True)
        if loss in ("logit", "both"):
            value = kd_loss(logits, teacher_logits, y, temperature, alpha)
        else:
            value = F.cross_entropy(logits, y)
        if loss in ("embedding", "both"):
            value = value + embedding_weight * embedding_loss(projection(embedding), teacher_embedding)
        if loss == "relational":
            value = value + embedding_weight * relational_loss(embedding, teacher_embedding)
        return value, logits

    return loss_fn


def train_student(data, teacher_dir: str | Path, run_dir: str | Path, student: str, loss: str,
                  config: DistillationConfig, budget: RunBudget | dict, device: torch.device | str = "cpu",
                  seed: int = 0, progress: bool | str = True, precision: str = "fp32") -> tuple[OcularNet, TrainResult]:
    """Train a compact student with (or, for ``loss='none'``, without) the teacher saved in ``teacher_dir``.

    ``data`` is the run's :class:`~ocular_utils.data.prepare.StudyData`; the teacher must have been
    trained on the same identities (its logits index the same classes). The student trains for
    ``budget`` images (:func:`ocular_utils.training.recipes.fit_to_budget`) at ``precision``.
    """
    teacher = load_model(teacher_dir, device=device)
    trained_on = read_spec(teacher_dir).get("identities")
    if trained_on != data.split.identity_hash:
        raise ValueError(f"the teacher in {teacher_dir} was trained on other identities (hash {trained_on}, this "
                         f"split {data.split.identity_hash}); its logits would not match the student's classes")
    torch.manual_seed(seed)
    model = build_model(student, data.split.num_classes, config.embedding_dim or teacher.embedding_dim)
    projection = Projection(model.embedding_dim, teacher.embedding_dim)
    loss_fn = distillation_loss(teacher, loss, config.temperature, config.alpha, config.embedding_weight, projection)
    result = fit_to_budget(model, data, run_dir, config.train, budget, device, seed, progress,
                           loss_fn=loss_fn, extra_module=projection, precision=precision)
    return model, result
