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


def fine_tune(model: OcularNet, data, run_dir: str | Path, config: TrainConfig, device: torch.device | str = "cpu",
              seed: int = 0, progress: bool | str = True) -> TrainResult:
    """Fine-tune a compressed model in place with the training loop (masks stay frozen), selecting on validation."""
    return fit(model, data.store, data.split.train, with_seed(config, seed), validate=data.validation(device),
               checkpoint_dir=Path(run_dir) / "checkpoints", device=device, progress=progress)
