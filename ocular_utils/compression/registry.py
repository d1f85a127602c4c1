"""The registry of compression methods, and the one entry point that applies them.

A method is a :class:`CompressionMethod`: a name, a family (unstructured pruning, channel
pruning, ...), and a function ``apply(model, compression, context) -> new model``. Adding a method
is one registration in the module of its family, e.g. in ``unstructured.py``::

    @register_unstructured("layer_inverse", scope="layer")
    def inverse_magnitude(model, tensors, context):
        return {(module, name): 1 / (getattr(module, name).detach().abs() + 1e-12) for _, module, name in tensors}

Every registered name is then valid in a profile's ``pruning.methods``, runs in the grid's prune
notebook, and appears in the chapter tables under its family.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..core.config import Settings
from ..core.registry import Registry
from ..training.loop import TrainConfig

UNSTRUCTURED = "unstructured pruning"
CHANNEL = "channel pruning"


@dataclass
class CompressionContext:
    """What a method may need besides the model: one training batch, a seed, options."""

    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    seed: int = 0
    round_to: int | None = None
    loss_fn: Callable | None = None


@dataclass(frozen=True)
class CompressionMethod:
    """One registered compression method."""

    name: str
    family: str
    apply: Callable[[nn.Module, float, CompressionContext], nn.Module]
    sparse_storage: bool = False  # store the model in the sparse format (masks leave zeros in dense tensors)
    resizes: bool = False  # tensors shrink: the saved model reloads by resizing its architecture
    description: str = ""
    meaningful_up_to: float | None = None  # a ratio beyond which the method's models collapse (a plan warns)
    # what the family's code needs to run the method (an unstructured method's score and scope, a channel method's
    # importance criterion): kept on the entry, so no side table has to follow the registry
    parts: dict[str, Any] = field(default_factory=dict, compare=False)


METHODS: Registry[CompressionMethod] = Registry("compression method")


def register(method: CompressionMethod) -> CompressionMethod:
    """Add ``method`` to :data:`METHODS` (a name may be registered once)."""
    return METHODS.register(method.name, method)


def get_method(name: str, family: str | None = None) -> CompressionMethod:
    """The registered method called ``name`` (of ``family`` when given); a clear error otherwise."""
    if family is None:
        return METHODS.lookup(name)
    members = [n for n, m in METHODS.items() if m.family == family]
    if name not in METHODS:
        raise ValueError(f"unknown {family} method {name!r}; expected one of {members}")
    if METHODS[name].family != family:
        raise ValueError(f"compression method {name!r} is {METHODS[name].family}, not {family}; "
                         f"expected one of {members}")
    return METHODS[name]


def compress(model: nn.Module, method: str, compression: float, batch=None, seed: int = 0,
             round_to: int | None = None, loss_fn: Callable | None = None) -> nn.Module:
    """A compressed copy of ``model`` (``model`` itself is left unchanged) at ``compression`` with ``method``."""
    context = CompressionContext(batch=batch, seed=seed, round_to=round_to, loss_fn=loss_fn)
    return get_method(method).apply(model, compression, context)


def _default_finetune() -> TrainConfig:
    # ShrinkBench fine-tunes with SGD (Nesterov momentum 0.9, lr 1e-3); the length is the study's matched
    # budget (the profile's budget section). The rate is constant on the trunk; each point of the budget
    # ends with a decay branch to zero (warmup-stable-decay, training.budget). The rate itself is chosen
    # by the sweep below on validation identities, the same for every method.
    return TrainConfig(lr=0.001, weight_decay=0.0, schedule="constant")


@dataclass
class PruningConfig(Settings):
    """The ``pruning`` section: the grid of methods x compression ratios and the fine-tuning recipe."""

    methods: list = field(default_factory=lambda: ["random", "global_weight", "layer_weight", "global_gradient",
                                                   "layer_gradient", "channel_magnitude", "channel_taylor"])
    compressions: list = field(default_factory=lambda: [2, 4, 8, 16, 32])
    round_to: int | None = None
    score_batch: int = 64  # training images in the batch that gradient-based scores use
    finetune: TrainConfig = field(default_factory=_default_finetune)
    # fine-tuning rates tried on validation identities at a short budget (empty: finetune.lr as given)
    lr_sweep: list = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03])
    sweep_methods: list = field(default_factory=lambda: ["layer_weight", "channel_magnitude"])
    sweep_fraction: float = 0.25  # the sweep's budget, as a fraction of the matched budget

    def __post_init__(self):
        for method in self.methods + self.sweep_methods:
            get_method(method)
        if any(not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0 for lr in self.lr_sweep):
            raise ValueError(f"pruning.lr_sweep: every rate must be a positive number (got {self.lr_sweep})")
        if not 0 < self.sweep_fraction <= 1:
            raise ValueError(f"pruning.sweep_fraction must be in (0, 1] (got {self.sweep_fraction})")
        for ratio in self.compressions:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 1:
                raise ValueError(f"pruning.compressions: {ratio!r} is not a ratio >= 1")

    def recipe(self, **finetune) -> dict:
        """The settings one grid cell uses (not the grid itself, so adding a ratio re-runs no cell).

        ``finetune`` overrides fine-tuning settings (e.g. the rate the sweep chose).
        """
        return {"round_to": self.round_to, "score_batch": self.score_batch,
                "finetune": self.finetune.to_dict() | finetune}


def compress_model(model: nn.Module, method: str, compression: float, data, config: PruningConfig,
                   seed: int = 0) -> nn.Module:
    """Compress ``model`` for the study: one seeded training batch of ``data`` feeds gradient scores.

    Returns a new model; ``model`` is left unchanged.
    """
    batch = data.training_batch(config.score_batch, seed)
    device = next(model.parameters()).device
    batch = tuple(t.to(device) for t in batch)
    return compress(model, method, compression, batch=batch, seed=seed, round_to=config.round_to)
