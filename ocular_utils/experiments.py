"""The study's training steps as functions, shared by the notebooks and the ``torchrun`` entry point."""
from __future__ import annotations

from pathlib import Path

import torch

from . import distill, pruning, structured
from .models import OcularNet, build_model
from .pipeline import StudyData, load_model, read_spec
from .training import TrainConfig, TrainResult, fit


def train_base_model(data: StudyData, run_dir: str | Path, backbone: str = "resnet50", embedding_dim: int = 128,
                     head: str = "linear", pretrained: str | None = None, train: dict | None = None,
                     device: torch.device | str = "cpu", seed: int = 0, progress: bool | str = True
                     ) -> tuple[OcularNet, TrainResult]:
    """Train the base verifier on the training identities; checkpoints in ``<run_dir>/checkpoints``."""
    torch.manual_seed(seed)
    model = build_model(backbone, data.split.num_classes, embedding_dim, head=head, pretrained=pretrained)
    config = TrainConfig.from_dict({"seed": seed} | dict(train or {}))
    result = fit(model, data.store, data.split.train, config, validate=data.validation(device),
                 checkpoint_dir=Path(run_dir) / "checkpoints", device=device, progress=progress)
    return model, result


def compress_model(model: OcularNet, method: str, compression: float, data: StudyData, seed: int = 0,
                   batch_size: int = 64, round_to: int | None = None) -> OcularNet:
    """Apply an unstructured (:data:`pruning.METHODS`) or channel (:data:`structured.STRUCTURED_METHODS`) method.

    Unstructured methods prune in place (masks); channel methods return a smaller copy.
    """
    batch = data.training_batch(batch_size, seed)
    device = next(model.parameters()).device
    batch = tuple(t.to(device) for t in batch)
    if method in pruning.METHODS:
        return pruning.prune(model, method, compression, batch=batch, seed=seed)
    if method in structured.STRUCTURED_METHODS:
        example = batch[0][:1]
        return structured.channel_prune(model, method, compression, example, batch=batch, round_to=round_to)
    raise ValueError(f"unknown compression method {method!r}; expected one of "
                     f"{list(pruning.METHODS) + list(structured.STRUCTURED_METHODS)}")


def fine_tune(model: OcularNet, data: StudyData, run_dir: str | Path, finetune: dict | None = None,
              device: torch.device | str = "cpu", seed: int = 0, progress: bool | str = True) -> TrainResult:
    """Fine-tune a compressed model with the base training loop (masks stay frozen), selecting on validation."""
    config = TrainConfig.from_dict({"seed": seed} | dict(finetune or {}))
    return fit(model, data.store, data.split.train, config, validate=data.validation(device),
               checkpoint_dir=Path(run_dir) / "checkpoints", device=device, progress=progress)


def train_student(data: StudyData, teacher_dir: str | Path, run_dir: str | Path, student: str = "mobilenet_v2",
                  loss: str = "logit", temperature: float = 4.0, alpha: float = 0.5, embedding_weight: float = 1.0,
                  embedding_dim: int | None = None, train: dict | None = None, device: torch.device | str = "cpu",
                  seed: int = 0, progress: bool | str = True) -> tuple[OcularNet, TrainResult]:
    """Train a compact student with (or, for ``loss='none'``, without) the teacher in ``teacher_dir``."""
    teacher = load_model(teacher_dir, device=device)
    trained_on = read_spec(teacher_dir).get("identities")
    if trained_on != data.split.identity_hash:
        raise ValueError(f"the teacher in {teacher_dir} was trained on other identities (hash {trained_on}, this "
                         f"split {data.split.identity_hash}); its logits would not match the student's classes")
    torch.manual_seed(seed)
    model = build_model(student, data.split.num_classes, embedding_dim or teacher.embedding_dim)
    projection = distill.Projection(model.embedding_dim, teacher.embedding_dim)
    loss_fn = distill.distillation_loss(teacher, loss, temperature, alpha, embedding_weight, projection)
    config = TrainConfig.from_dict({"seed": seed} | dict(train or {}))
    result = fit(model, data.store, data.split.train, config, validate=data.validation(device),
                 checkpoint_dir=Path(run_dir) / "checkpoints", loss_fn=loss_fn, extra_module=projection,
                 device=device, progress=progress)
    return model, result
