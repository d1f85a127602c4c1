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

from .pruning import batch_gradients, check_compression, parameter_counts

STRUCTURED_METHODS = {
    "channel_magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "channel_taylor": lambda: tp.importance.GroupTaylorImportance(),
}


def _prune_once(model: nn.Module, method: str, ratio: float, example: torch.Tensor, batch, loss_fn,
                round_to: int | None) -> nn.Module:
    ignored = [model.head, model.embedding] if hasattr(model, "head") else []
    pruner = tp.pruner.MetaPruner(model, example, importance=STRUCTURED_METHODS[method](), pruning_ratio=ratio,
                                  ignored_layers=ignored, round_to=round_to, global_pruning=False)
    if method == "channel_taylor":
        batch_gradients(model, batch, loss_fn, "channel_taylor")
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def channel_prune(model: nn.Module, method: str, compression: float, example: torch.Tensor, batch=None,
                  loss_fn: Callable | None = None, round_to: int | None = None, tolerance: float = 0.02,
                  max_iterations: int = 12) -> nn.Module:
    """Return a channel-pruned copy of ``model`` whose deployed network has ~``1/compression`` of the parameters.

    The uniform channel ratio is found by bisection (parameters fall roughly as ``(1 - p)^2``);
    the result is within ``tolerance`` (relative) of the requested compression when channel
    granularity allows.
    """
    if method not in STRUCTURED_METHODS:
        raise ValueError(f"unknown structured method {method!r}; expected one of {list(STRUCTURED_METHODS)}")
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


def reshape_to_state_dict(model: nn.Module, state_dict: dict) -> nn.Module:
    """Resize the Conv2d / Linear / BatchNorm modules of a freshly built ``model`` to a saved (pruned) state dict.

    This is how channel-pruned checkpoints reload from plain state dicts (``weights_only=True``).
    """
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        weight = state_dict.get(prefix + "weight")
        if weight is None:
            continue
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups == module.in_channels == module.out_channels and module.groups > 1
            module.out_channels = weight.shape[0]
            module.groups = weight.shape[0] if depthwise else module.groups
            module.in_channels = weight.shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = weight.shape
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.num_features = weight.shape[0]
            for buffer in ("running_mean", "running_var"):
                setattr(module, buffer, torch.zeros_like(state_dict[prefix + buffer]))
        else:
            continue
        module.weight = nn.Parameter(torch.empty_like(weight))
        if getattr(module, "bias", None) is not None and prefix + "bias" in state_dict:
            module.bias = nn.Parameter(torch.empty_like(state_dict[prefix + "bias"]))
    model.load_state_dict(state_dict)
    return model
