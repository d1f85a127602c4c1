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
from .budget import AlongTheWay, RunBudget
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
                     seed: int = 0, progress: bool | str = True) -> tuple[OcularNet, TrainResult]:
    """Train the base verifier on the training identities of ``data`` (a StudyData)."""
    torch.manual_seed(seed)
    model = build_model(config.backbone, data.split.num_classes, config.embedding_dim, head=config.head,
                        pretrained=config.pretrained)
    result = fit(model, data.store, data.split.train, with_seed(config.train, seed), validate=data.validation(device),
                 checkpoint_dir=Path(run_dir) / "checkpoints", device=device, progress=progress)
    return model, result


def fit_to_budget(model: torch.nn.Module, data, run_dir: str | Path, config: TrainConfig, budget: RunBudget | dict,
                  device: torch.device | str = "cpu", seed: int = 0, progress: bool | str = True,
                  **fit_options) -> TrainResult:
    """Train ``model`` for its budget of images (:mod:`ocular_utils.training.budget`); leave it at the budget.

    Validation EER is computed at the budget's points and selects the model among them; the
    best-so-far model is also scored on the test trials at the points (all of them for a run that goes
    on past its budget, :attr:`RunBudget.extended`, else half the budget and the budget): reported and
    used for the convergence check, never to choose. ``config``'s epochs and batches per epoch are
    replaced by the budget's chunks.
    """
    from ..verification.scoring import evaluate_on_test

    budget = budget if isinstance(budget, RunBudget) else RunBudget.from_dict(budget, "budget")
    chunked, points = budget.train_config(with_seed(config, seed), len(data.split.train))
    along = AlongTheWay(run_dir, budget, points, lambda m: evaluate_on_test(m, data, device, replicates=0))
    result = fit(model, data.store, data.split.train, chunked, validate=data.validation(device),
                 checkpoint_dir=Path(run_dir) / "checkpoints", device=device, progress=progress,
                 validate_at=set(points), after_validation=along, **fit_options)
    along.restore_budget_model(model, device)
    return result


def fine_tune(model: OcularNet, data, run_dir: str | Path, config: TrainConfig, budget: RunBudget | dict,
              device: torch.device | str = "cpu", seed: int = 0, progress: bool | str = True) -> TrainResult:
    """Fine-tune a compressed model in place for its budget (masks stay frozen), selecting on validation."""
    return fit_to_budget(model, data, run_dir, config, budget, device, seed, progress)
