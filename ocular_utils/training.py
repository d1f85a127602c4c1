"""The training loop shared by base training, fine-tuning after pruning, and distillation.

Seeded and deterministic on CPU, tqdm progress, per-epoch metrics, the best state dict chosen on
validation identities (never on test), resumable from ``last.pt``, CUDA / MPS / CPU, and
DistributedDataParallel under ``torchrun``. Checkpoints hold state dicts only and are written
atomically; they load with ``weights_only=True``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .data.images import BatchLoader, ImageStore
from .io import atomic_torch_save, load_state

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Schedule and optimizer of one training or fine-tuning run."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    max_batches_per_epoch: int | None = None
    label_smoothing: float = 0.0
    augment: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs >= 0, batch_size >= 1 and lr > 0 are required (got {self})")

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        """Build from a (profile) dict, rejecting unknown keys by name."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class TrainResult:
    """What a run of :func:`fit` leaves: per-epoch history, the selected epoch, timing."""

    history: pd.DataFrame
    best_epoch: int
    best_metric: float | None
    resumed_from: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        """Mean training throughput over the epochs run."""
        if self.history.empty:
            return float("nan")
        return float(self.history["images"].sum() / self.history["seconds"].sum())


def cross_entropy_loss(label_smoothing: float = 0.0) -> Callable:
    """The default loss: cross-entropy of the identity logits."""

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        logits = model(x)
        return nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing), logits

    return loss_fn


def make_optimizer(parameters, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW as the config says."""
    parameters = [p for p in parameters if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-step learning-rate schedule: linear warm-up, then cosine decay or constant."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(model: nn.Module, store: ImageStore, train_frame: pd.DataFrame, config: TrainConfig,
        validate: Callable[[nn.Module], dict] | None = None, checkpoint_dir: str | Path | None = None,
        loss_fn: Callable | None = None, extra_module: nn.Module | None = None,
        device: torch.device | str = "cpu", progress: bool | str = True) -> TrainResult:
    """Train ``model`` on ``train_frame`` (column ``label``), keep the best epoch by validation EER.

    ``loss_fn(model, x, y) -> (loss, logits)`` defaults to cross-entropy; ``extra_module`` holds
    trainable parameters of the loss (e.g. a distillation projection), optimized and checkpointed
    with the model. With ``checkpoint_dir`` the run resumes from its ``last.pt`` and leaves
    ``best.pt`` (``{"model": state dict, "epoch", "metric"}`` of the selected epoch). After return
    ``model`` holds the best state.
    ``progress``: ``True`` prints one line per epoch, ``"bar"`` adds a per-batch progress bar, ``False`` is silent.
    """
    device = torch.device(device)
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    model.to(device)
    if extra_module is not None:
        extra_module.to(device)
    loader = BatchLoader(store, train_frame, config.batch_size, shuffle=True, augment_images=config.augment,
                         seed=config.seed, rank=distributed.rank(), world_size=distributed.world_size(),
                         max_batches=config.max_batches_per_epoch)
    trainable = list(model.parameters()) + (list(extra_module.parameters()) if extra_module is not None else [])
    optimizer = make_optimizer(trainable, config)
    scheduler = make_scheduler(optimizer, config, len(loader))
    history: list[dict] = []
    best_state = None
    best_metric, best_epoch, start_epoch = None, 0, 1
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    last_path = checkpoint_dir / "last.pt" if checkpoint_dir else None
    best_path = checkpoint_dir / "best.pt" if checkpoint_dir else None
    if last_path is not None and last_path.is_file():
        state = load_state(last_path, map_location=device)
        if state["config"] != asdict(config):
            raise ValueError(f"{last_path} was written with other training settings ({state['config']}); "
                             "use another checkpoint folder or delete it")
        model.load_state_dict(state["model"])
        if extra_module is not None and state.get("extra") is not None:
            extra_module.load_state_dict(state["extra"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        loader.load_state_dict(state["loader"])
        history, best_metric, best_epoch = state["history"], state["best_metric"], state["best_epoch"]
        if best_path is not None and best_path.is_file():
            # best.pt is written before last.pt: after a crash between the two it is the newer truth
            best = load_state(best_path, map_location="cpu")
            best_metric, best_epoch = best["metric"], best["epoch"]
        start_epoch = state["epoch"] + 1
    resumed_from = start_epoch - 1
    train_model = distributed.wrap(model, device)
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs + 1):
        train_model.train()
        t0 = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", leave=False,
                   disable=progress != "bar" or not distributed.is_main())
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss, logits = loss_fn(train_model, x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; "
                                         "lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if extra_module is not None:
                distributed.average_gradients(extra_module)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        row = {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
               "lr": optimizer.param_groups[0]["lr"], "images": seen * distributed.world_size(),
               "seconds": time.perf_counter() - t0}
        if distributed.is_main():
            if validate is not None:
                row.update({f"val_{k}": v for k, v in validate(model).items()})
                metric = row["val_eer"]
                if best_metric is None or metric < best_metric:
                    best_metric, best_epoch = metric, epoch
                    if best_path is not None:
                        atomic_torch_save({"model": model.state_dict(), "epoch": epoch, "metric": metric}, best_path)
                    else:
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                best_epoch = epoch
                if best_path is not None:
                    atomic_torch_save({"model": model.state_dict(), "epoch": epoch, "metric": None}, best_path)
            history.append(row)
            if last_path is not None:
                atomic_torch_save({
                    "model": model.state_dict(),
                    "extra": extra_module.state_dict() if extra_module is not None else None,
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "loader": loader.state_dict(), "epoch": epoch, "history": history,
                    "best_metric": best_metric, "best_epoch": best_epoch, "config": asdict(config),
                }, last_path)
            if progress:
                shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
                print(shown, flush=True)
        distributed.barrier()
    if best_path is not None and best_path.is_file():
        model.load_state_dict(load_state(best_path, map_location=device)["model"])
    elif best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(pd.DataFrame(history), best_epoch, best_metric, resumed_from,
                       time.perf_counter() - started)


def training_throughput(model: nn.Module, image_size: tuple[int, int], num_classes: int, batch_size: int = 32,
                        steps: int = 5, device: torch.device | str = "cpu") -> float:
    """Images/s of forward + backward + SGD step on random batches (after one warm-up step), on a copy of ``model``."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1 (got {steps})")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 3, *image_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)
