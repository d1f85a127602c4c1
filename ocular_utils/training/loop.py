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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Collection

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from ..core.atomic import atomic_torch_save, load_state
from ..core.config import Settings
from ..core.environment import autocast, training_memory_format
from ..data.images import BatchLoader, ImageStore
from . import distributed

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant", "linear")


@dataclass
class TrainConfig(Settings):
    """Schedule and optimizer of one training or fine-tuning run (``seed`` orders batches and augmentation)."""

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
    chunk_batches: list | None = None  # batches of each epoch ("chunk"), replacing epochs (training to a budget)
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
        if self.chunk_batches is not None and (not self.chunk_batches or min(self.chunk_batches) < 1):
            raise ValueError(f"chunk_batches must list at least one chunk of >= 1 batch (got {self.chunk_batches})")

    @property
    def chunks(self) -> int:
        """Number of epochs (chunks) the run has."""
        return len(self.chunk_batches) if self.chunk_batches is not None else self.epochs


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
    """Per-step learning-rate schedule: linear warm-up, then cosine decay, constant, or linear decay to zero.

    ``steps_per_epoch`` is one pass over the training images (warm-up is counted in passes); with
    ``chunk_batches`` the run lasts their sum.
    """
    total = max(1, sum(config.chunk_batches) if config.chunk_batches else config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if config.schedule == "linear":  # the rate after the last step is zero
            return 1.0 - progress
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainingState:
    """What a run carries from epoch to epoch (and what ``last.pt`` holds to resume it)."""

    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    epoch: int = 0  # the last completed epoch
    best_state: dict | None = None  # in memory, when there is no checkpoint folder


def train_one_epoch(model: nn.Module, loader: BatchLoader, loss_fn: Callable, optimizer, scheduler,
                    device: torch.device, epoch: int, epochs: int, extra_module: nn.Module | None = None,
                    show_bar: bool = False, precision: str = "fp32",
                    memory_format: torch.memory_format = torch.contiguous_format) -> dict:
    """One pass over ``loader``: forward, loss, backward, step, per-step schedule. Returns the epoch's row.

    ``precision="bf16"`` runs the forward pass and the loss under bf16 autocast (weights, gradients
    and optimizer state stay fp32); batches move to the device in ``memory_format``.
    """
    model.train()
    started = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not show_bar)
    for x, y in bar:
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with autocast(device, precision):
            loss, logits = loss_fn(model, x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; lower the learning rate")
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
    return {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "lr": optimizer.param_groups[0]["lr"], "images": seen * distributed.world_size(),
            "seconds": time.perf_counter() - started}


def select_epoch(model: nn.Module, row: dict, state: TrainingState, validate: Callable | None,
                 best_path: Path | None) -> None:
    """Validate (adding ``val_*`` to ``row``) and keep the model if this epoch is the best so far.

    The best epoch has the lowest validation EER (validation identities only, never test); without
    ``validate`` the last epoch is kept. It is written to ``best_path`` (or held in memory).
    """
    if validate is not None:
        row.update({f"val_{k}": v for k, v in validate(model).items()})
        metric = row["val_eer"]
        if state.best_metric is not None and metric >= state.best_metric:
            return
    else:
        metric = None
    state.best_metric, state.best_epoch = metric, row["epoch"]
    if best_path is not None:
        atomic_torch_save({"model": model.state_dict(), "epoch": row["epoch"], "metric": metric}, best_path)
    elif validate is not None:
        state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, model: nn.Module, extra_module: nn.Module | None, optimizer, scheduler,
                    loader: BatchLoader, state: TrainingState, config: TrainConfig) -> None:
    """Write everything needed to resume after ``state.epoch`` to ``path`` (atomically)."""
    atomic_torch_save({
        "model": model.state_dict(), "extra": extra_module.state_dict() if extra_module is not None else None,
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "loader": loader.state_dict(),
        "epoch": state.epoch, "history": state.history, "best_metric": state.best_metric,
        "best_epoch": state.best_epoch, "config": asdict(config),
    }, path)


def resume(last_path: Path | None, best_path: Path | None, model: nn.Module, extra_module: nn.Module | None,
           optimizer, scheduler, loader: BatchLoader, config: TrainConfig, device: torch.device) -> TrainingState:
    """Restore model, optimizer, schedule and loader position from ``last_path`` if it exists (in place)."""
    if last_path is None or not last_path.is_file():
        return TrainingState()
    saved = load_state(last_path, map_location=device)
    if saved["config"] != asdict(config):
        raise ValueError(f"{last_path} was written with other training settings ({saved['config']}); "
                         "use another checkpoint folder or delete it")
    model.load_state_dict(saved["model"])
    if extra_module is not None and saved.get("extra") is not None:
        extra_module.load_state_dict(saved["extra"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    loader.load_state_dict(saved["loader"])
    state = TrainingState(saved["history"], saved["best_metric"], saved["best_epoch"], saved["epoch"])
    if best_path is not None and best_path.is_file():
        # best.pt is written before last.pt: after a crash between the two it is the newer truth
        best = load_state(best_path, map_location="cpu")
        state.best_metric, state.best_epoch = best["metric"], best["epoch"]
    return state


def restore_best(model: nn.Module, state: TrainingState, best_path: Path | None, device: torch.device) -> None:
    """Load the selected epoch's weights into ``model`` (in place)."""
    if best_path is not None and best_path.is_file():
        model.load_state_dict(load_state(best_path, map_location=device)["model"])
    elif state.best_state is not None:
        model.load_state_dict(state.best_state)


@dataclass
class TrainingContext:
    """What an ``on_epoch_end`` callback of :func:`fit` may use: the model and its training objects."""

    model: nn.Module
    extra_module: nn.Module | None
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    store: ImageStore
    frame: pd.DataFrame
    config: TrainConfig
    device: torch.device


def log_epoch(row: dict) -> None:
    """Print one line with the epoch's numbers."""
    print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)


def fit(model: nn.Module, store: ImageStore, train_frame: pd.DataFrame, config: TrainConfig,
        validate: Callable[[nn.Module], dict] | None = None, checkpoint_dir: str | Path | None = None,
        loss_fn: Callable | None = None, extra_module: nn.Module | None = None,
        device: torch.device | str = "cpu", progress: bool | str = True,
        validate_at: Collection[int] | None = None, on_epoch_end: Callable | None = None,
        precision: str = "fp32", channels_last: bool | None = None) -> TrainResult:
    """Train ``model`` (in place) on ``train_frame`` (column ``label``); keep the best epoch by validation EER.

    ``loss_fn(model, x, y) -> (loss, logits)`` defaults to cross-entropy; ``extra_module`` holds
    trainable parameters of the loss (e.g. a distillation projection), optimized and checkpointed
    with the model. With ``checkpoint_dir`` the run resumes from its ``last.pt`` and leaves
    ``best.pt`` (``{"model": state dict, "epoch", "metric"}`` of the selected epoch). After return
    ``model`` holds the best state.
    ``progress``: ``True`` prints one line per epoch, ``"bar"`` adds a per-batch progress bar, ``False`` is silent.
    ``validate_at``: the epochs that are validated and may be selected (default: every epoch; an
    empty set: no selection, the last epoch is the model). ``on_epoch_end(context, row)`` is called
    after every epoch (before its checkpoint) with a :class:`TrainingContext` and the epoch's row,
    which it may extend (see :class:`ocular_utils.training.along.AlongTheWay`).
    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast of the training steps; see
    :func:`ocular_utils.core.environment.resolve_precision`).
    ``channels_last``: train in channels_last memory format (``None``: where it pays,
    :func:`~ocular_utils.core.environment.training_memory_format`); the model is back in contiguous
    format when ``fit`` returns, so what is saved or exported afterwards is laid out as ever.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"fit runs at precision 'fp32' or 'bf16' (got {precision!r}); resolve 'auto' first")
    device = torch.device(device)
    memory_format = (training_memory_format(device) if channels_last is None
                     else torch.channels_last if channels_last else torch.contiguous_format)
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    model.to(device, memory_format=memory_format)
    if extra_module is not None:
        extra_module.to(device)
    loader = BatchLoader(store, train_frame, config.batch_size, shuffle=True, augment_images=config.augment,
                         seed=config.seed, rank=distributed.rank(), world_size=distributed.world_size(),
                         max_batches=None if config.chunk_batches else config.max_batches_per_epoch)
    trainable = list(model.parameters()) + (list(extra_module.parameters()) if extra_module is not None else [])
    optimizer = make_optimizer(trainable, config)
    scheduler = make_scheduler(optimizer, config, len(loader))
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    last_path = checkpoint_dir / "last.pt" if checkpoint_dir else None
    best_path = checkpoint_dir / "best.pt" if checkpoint_dir else None
    state = resume(last_path, best_path, model, extra_module, optimizer, scheduler, loader, config, device)
    resumed_from = state.epoch
    train_model = distributed.wrap(model, device)
    context = TrainingContext(model, extra_module, optimizer, loss_fn, store, train_frame, config, device)
    started = time.perf_counter()
    for epoch in range(state.epoch + 1, config.chunks + 1):
        if config.chunk_batches:
            loader.max_batches = config.chunk_batches[epoch - 1]
        row = train_one_epoch(train_model, loader, loss_fn, optimizer, scheduler, device, epoch, config.chunks,
                              extra_module, show_bar=progress == "bar" and distributed.is_main(),
                              precision=precision, memory_format=memory_format)
        if distributed.is_main():
            if validate_at is None or epoch in validate_at:
                select_epoch(model, row, state, validate, best_path)
                row.update(best_epoch=state.best_epoch, best_val_eer=state.best_metric)
            if on_epoch_end is not None:
                on_epoch_end(context, row)
            state.history.append(row)
            state.epoch = epoch
            if last_path is not None:
                save_checkpoint(last_path, model, extra_module, optimizer, scheduler, loader, state, config)
            if progress:
                log_epoch(row)
        distributed.barrier()
    restore_best(model, state, best_path, device)
    model.to(memory_format=torch.contiguous_format)
    return TrainResult(pd.DataFrame(state.history), state.best_epoch, state.best_metric, resumed_from,
                       time.perf_counter() - started)


def training_throughput(model: nn.Module, image_size: tuple[int, int], num_classes: int,
                        batch_size: int = TrainConfig.batch_size,
                        steps: int = 5, device: torch.device | str = "cpu", copy_model: bool = True,
                        precision: str = "fp32", channels_last: bool = False, compile: bool = False) -> float:
    """Images/s of forward + backward + SGD step on random batches (after one warm-up step).

    Trains a copy of ``model`` (or, with ``copy_model=False``, ``model`` itself: masked models cannot be copied),
    at ``precision`` (bf16 autocast or fp32), optionally in channels_last memory format and through
    ``torch.compile``. With ``compile`` the warm-up step compiles; :func:`training_step_timing` reports
    its seconds too.
    """
    return training_step_timing(model, image_size, num_classes, batch_size, steps, device, copy_model,
                                precision, channels_last, compile)["images_per_second"]


def training_step_timing(model: nn.Module, image_size: tuple[int, int], num_classes: int,
                         batch_size: int = TrainConfig.batch_size, steps: int = 5,
                         device: torch.device | str = "cpu", copy_model: bool = True, precision: str = "fp32",
                         channels_last: bool = False, compile: bool = False) -> dict:
    """Seconds of the first training step (compilation included) and images/s of the ``steps`` after it."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1 (got {steps})")
    device = torch.device(device)
    model = (copy.deepcopy(model) if copy_model else model).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    step_model = torch.compile(model) if compile else model
    x = torch.randn(batch_size, 3, *image_size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = nn.functional.cross_entropy(step_model(x), y)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    step()
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return {"first_step_seconds": first, "images_per_second": steps * batch_size / (time.perf_counter() - started)}
