"""Structured (channel) pruning with Torch-Pruning: a genuinely smaller dense network.

Unlike masks, removing whole channels shrinks every tensor, so dense kernels on a phone run
faster. The identity head is ignored and the embedding width is kept; the channel ratio is
searched so that the deployed network has ``1 / compression`` of its parameters.
Importance: L1 magnitude of the channel group, or first-order Taylor ``|w * dL/dw|`` on one batch.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn

from ..models.counting import parameter_counts
from .registry import CHANNEL, CompressionContext, CompressionMethod, get_method, register
from .unstructured import batch_gradients, check_compression

MEANINGFUL_UP_TO = 32.0  # beyond it (1/32 of the parameters) only a few channels per layer remain


def _prune_once(model: nn.Module, method: str, ratio: float, example: torch.Tensor, batch, loss_fn,
                round_to: int | None) -> nn.Module:
    ignored = [model.head, model.embedding] if hasattr(model, "head") else []
    importance = get_method(method, CHANNEL).parts["importance"]()
    pruner = tp.pruner.MetaPruner(model, example, importance=importance, pruning_ratio=ratio,
                                  ignored_layers=ignored, round_to=round_to, global_pruning=False)
    if isinstance(importance, tp.importance.GroupTaylorImportance):  # first-order scores need gradients
        batch_gradients(model, batch, loss_fn, "channel_taylor")
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def channel_prune(model: nn.Module, method: str, compression: float, example: torch.Tensor, batch=None,
                  loss_fn: Callable | None = None, round_to: int | None = None, tolerance: float = 0.02,
                  max_iterations: int = 12) -> nn.Module:
    """A channel-pruned copy of ``model`` (left unchanged): its deployed network keeps ~``1/compression``.

    The uniform channel ratio is found by bisection (parameters fall roughly as ``(1 - p)^2``);
    the result is within ``tolerance`` (relative) of the requested compression when channel
    granularity allows.
    """
    get_method(method, CHANNEL)  # a clear error for a name that is not a channel method
    compression = check_compression(compression)
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1 (got {max_iterations})")
    total = parameter_counts(model)["total"]
    if compression == 1:
        return copy.deepcopy(model)
    was_training = model.training
    low, high = 0.0, 0.99
    best, best_error = None, float("inf")
    ratio = 1 - compression ** -0.5
    for _ in range(max_iterations):
        try:
            candidate = _prune_once(copy.deepcopy(model).eval(), method, ratio, example, batch, loss_fn, round_to)
        except (ZeroDivisionError, IndexError, RuntimeError) as error:
            name = getattr(model, "backbone_name", type(model).__name__)
            raise ValueError(f"Torch-Pruning cannot channel-prune {name} ({type(error).__name__}: {error}); "
                             "use an unstructured method or another backbone") from error
        achieved = total / parameter_counts(candidate)["total"]
        error = abs(achieved / compression - 1)
        if error < best_error:
            best, best_error = candidate, error
        if error <= tolerance:
            break
        low, high = (ratio, high) if achieved < compression else (low, ratio)
        ratio = (low + high) / 2
    best.train(was_training)
    return best


def register_channel(name: str, importance: Callable[[], object], description: str = "") -> None:
    """Register channel-pruning method ``name`` with a factory of its Torch-Pruning importance criterion."""

    def apply(model: nn.Module, compression: float, context: CompressionContext) -> nn.Module:
        if context.batch is None:
            raise ValueError(f"{name} needs one training batch to trace the network: pass batch=(x, y)")
        return channel_prune(model, name, compression, context.batch[0][:1], batch=context.batch,
                             loss_fn=context.loss_fn, round_to=context.round_to)

    register(CompressionMethod(name, CHANNEL, apply, resizes=True, description=description,
                               meaningful_up_to=MEANINGFUL_UP_TO, parts={"importance": importance}))


register_channel("channel_magnitude", lambda: tp.importance.GroupMagnitudeImportance(p=1),
                 "L1 magnitude of each channel group; a smaller dense network")
register_channel("channel_taylor", lambda: tp.importance.GroupTaylorImportance(),
                 "first-order Taylor |w dL/dw| of each channel group; a smaller dense network")
