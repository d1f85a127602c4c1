"""The study's training recipes: the base verifier, and fine-tuning of a compressed model.

Both run :func:`~ocular_utils.training.loop.fit` with checkpoints in ``<run_dir>/checkpoints`` and
checkpoint selection on the validation identities. (Training a student is distillation:
:func:`ocular_utils.compression.distillation.train_student`.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.networks import ModelConfig, OcularNet, build_model
from ..verification.scoring import evaluate_on_test, validation_of
from .along import AlongTheWay, along_the_way
from .budget import RunBudget
from .loop import TrainConfig, TrainResult, fit


def _default_base_training() -> TrainConfig:
    return TrainConfig(epochs=12, optimizer="adamw", lr=0.002, weight_decay=0.05, warmup_epochs=0.5)


@dataclass
class BaseConfig(ModelConfig):
    """The ``base`` section: the uncompressed verifier (:class:`ModelConfig`) and how it is trained."""

    train: TrainConfig = field(default_factory=_default_base_training)


def with_seed(config: TrainConfig, seed: int) -> TrainConfig:
    """``config`` with the run's seed (batch order and augmentation follow it)."""
    return dataclasses.replace(config, seed=seed)


def train_base_model(data, run_dir: str | Path, config: BaseConfig, device: torch.device | str = "cpu",
                     seed: int = 0, progress: bool | str = True,
                     precision: str = "fp32") -> tuple[OcularNet, TrainResult]:
    """Train the base verifier on the training identities of ``data`` (a StudyData), at ``precision``."""
    torch.manual_seed(seed)
    model = build_model(config.backbone, data.split.num_classes, config.embedding_dim, head=config.head,
                        pretrained=config.pretrained)
    result = fit(model, data.store, data.split.train, with_seed(config.train, seed),
                 validate=validation_of(data, device), checkpoint_dir=Path(run_dir) / "checkpoints", device=device,
                 progress=progress, precision=precision)
    return model, result


def fit_to_budget(model: torch.nn.Module, data, run_dir: str | Path, config: TrainConfig, budget: RunBudget | dict,
                  device: torch.device | str = "cpu", seed: int = 0, progress: bool | str = True,
                  **fit_options) -> TrainResult:
    """Train ``model`` for its budget of images; leave it as the finished model at the budget.

    Warmup-stable-decay (:mod:`ocular_utils.training.budget`): ``config``'s schedule runs the trunk
    (a warm-up over the budget's ``warmup_fraction`` of its images, then constant for
    ``schedule="constant"``), and at each point of the budget a branch decays the rate to zero over
    the point's last ``decay_fraction`` of images; its end is the finished model at that point,
    scored on validation identities and (at the reported points) on the test trials
    (:class:`~ocular_utils.training.along.AlongTheWay`). Nothing is selected: the model returned is
    the one at the budget (point 1.0). With ``decay_fraction=0`` the trunk itself
    is the model at each point (a dedicated run whose own schedule ends at the budget, e.g.
    ``schedule="linear"``). ``config``'s epochs are replaced by the budget's chunks.
    """
    budget = budget if isinstance(budget, RunBudget) else RunBudget.from_dict(budget, "budget")
    if 1.0 not in budget.points:
        raise ValueError(f"budget points {budget.points} must hold 1.0: the run's model is the one at its budget")
    if config.warmup_epochs:
        raise ValueError(f"a budgeted run warms up for budget.warmup_fraction of its images, not for train "
                         f"warmup_epochs (got warmup_epochs={config.warmup_epochs}); set it to 0")
    config = dataclasses.replace(with_seed(config, seed), warmup_epochs=budget.warmup_passes(len(data.split.train)))
    chunks, forks = budget.chunks(config.batch_size, len(data.split.train))
    along = AlongTheWay(run_dir, budget, forks, validation_of(data, device),
                        lambda m: evaluate_on_test(m, data, device, replicates=0))
    result = fit(model, data.store, data.split.train, dataclasses.replace(config, chunk_batches=chunks),
                 checkpoint_dir=Path(run_dir) / "checkpoints", device=device, progress=progress,
                 validate_at=set(), on_epoch_end=along, **fit_options)
    along.restore_budget_model(model, device)
    at_budget = along_the_way(result.history)
    at_budget = at_budget[at_budget["point"] == 1.0]
    # the model returned is the finished model at the budget: its validation EER, and the chunk it forked at
    return dataclasses.replace(result, best_metric=float(at_budget["val_eer"].iloc[0]),
                               best_epoch=next(k for k, forks in forks.items() if any(f.point == 1.0 for f in forks)))
