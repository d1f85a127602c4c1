"""Unstructured pruning with ShrinkBench's semantics, expressed with ``torch.nn.utils.prune`` masks.

* Prunable: the weights and biases of every ``Conv2d`` and ``Linear`` of the *deployed embedding
  network* (backbone + embedding layer; the first conv and the embedding layer included). The
  training-only classification head is neither pruned nor counted. BatchNorm is never pruned but
  counts in the total.
* Compression ``c = total / nonzero`` over the deployed network; the fraction of prunable
  parameters kept is ``f = (total / c - (total - prunable)) / prunable`` and must lie in (0, 1].
* Importance: ``|w|`` (weight) or ``|w * dL/dw|`` on one training batch (gradient); random keeps each
  entry with probability ``f`` (seeded Bernoulli, so its ratio is approximate).
* Scope: global (one threshold over all prunable tensors) or layerwise (the same ``f`` in each).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune


@dataclass(frozen=True)
class PruningMethod:
    """One pruning method: an importance score and a scope."""

    importance: str  # "random", "weight" or "gradient"
    scope: str  # "random", "global" or "layer"


METHODS = {
    "random": PruningMethod("random", "random"),
    "global_weight": PruningMethod("weight", "global"),
    "layer_weight": PruningMethod("weight", "layer"),
    "global_gradient": PruningMethod("gradient", "global"),
    "layer_gradient": PruningMethod("gradient", "layer"),
}


def _named_deployed(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if hasattr(model, "backbone") and hasattr(model, "embedding"):
        return [("backbone", model.backbone), ("embedding", model.embedding)]
    return [("", model)]


def deployed_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of the deployed embedding network (backbone + embedding), head excluded."""
    return [module for _, module in _named_deployed(model)]


def prunable_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(qualified name, module, 'weight'|'bias')`` of every prunable tensor, in model order."""
    found = []
    for prefix, root in _named_deployed(model):
        for name, module in root.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                for tensor in ("weight", "bias"):
                    if getattr(module, tensor, None) is not None:
                        found.append((".".join(p for p in (prefix, name, tensor) if p), module, tensor))
    return found


def effective_tensors(module: nn.Module):
    """``(name, tensor)`` of a module's own parameters as used in forward (masks applied)."""
    for name, param in module.named_parameters(recurse=False):
        if name.endswith("_orig"):
            base = name[: -len("_orig")]
            yield base, getattr(module, base)
        else:
            yield name, param


def parameter_counts(model: nn.Module) -> dict:
    """Total, prunable and nonzero parameters of the deployed network (masks applied)."""
    total = nonzero = 0
    for root in deployed_modules(model):
        for module in root.modules():
            for _, tensor in effective_tensors(module):
                total += tensor.numel()
                nonzero += int(torch.count_nonzero(tensor.detach()))
    prunable = sum(getattr(m, t).numel() for _, m, t in prunable_tensors(model))
    return {"total": total, "prunable": prunable, "nonzero": nonzero}


def compression_ratio(model: nn.Module) -> float:
    """Achieved compression: deployed parameters / nonzero deployed parameters."""
    counts = parameter_counts(model)
    return counts["total"] / max(counts["nonzero"], 1)


def check_compression(compression) -> float:
    """``compression`` as a float; a clear error unless it is a real number >= 1."""
    if isinstance(compression, bool) or not isinstance(compression, numbers.Real) or not compression >= 1:
        raise ValueError(f"compression must be a number >= 1 (got {compression!r})")
    return float(compression)


def keep_fraction(total: int, prunable: int, compression: float, unprunable_nonzero: int | None = None) -> float:
    """Fraction of prunable parameters to keep so that ``total / nonzero == compression``.

    ShrinkBench: ``f = (total / c - (total - prunable)) / prunable``. ``unprunable_nonzero``
    replaces ``total - prunable`` when some unprunable parameters are exactly zero (e.g.
    freshly initialized BatchNorm biases), so the achieved ratio still matches the request.
    """
    compression = check_compression(compression)
    if compression == 1:
        return 1.0
    fixed = total - prunable if unprunable_nonzero is None else unprunable_nonzero
    fraction = (total / compression - fixed) / prunable
    if not 0 < fraction <= 1:
        limit = total / fixed if fixed else float("inf")
        raise ValueError(
            f"compression {compression} is impossible: it needs a keep fraction of {fraction:.4f} of the "
            f"prunable parameters (must be in (0, 1]); with {fixed} nonzero unprunable parameters the "
            f"ratio must stay below {limit:.1f}"
        )
    return fraction


def is_pruned(model: nn.Module) -> bool:
    """True if any module of ``model`` carries a pruning mask."""
    return any(torch_prune.is_pruned(m) for m in deployed_modules(model))


def batch_gradients(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], loss_fn: Callable | None,
                    what: str) -> None:
    """Fill ``.grad`` with ``dL/dw`` of ``loss_fn(model(x), y)`` for one batch, in train mode.

    BatchNorm running statistics are restored afterwards: scoring must not change the model.
    """
    if batch is None:
        raise ValueError(f"{what} needs one training batch: pass batch=(x, y)")
    x, y = batch
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    (loss_fn or nn.functional.cross_entropy)(model(x), y).backward()
    model.train(was_training)
    model.load_state_dict(buffers, strict=False)


def gradient_scores(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], loss_fn: Callable | None,
                    tensors: list) -> dict:
    """``|w * dL/dw|`` of every prunable tensor for one batch (BatchNorm statistics left unchanged)."""
    batch_gradients(model, batch, loss_fn, "gradient pruning")
    scores = {}
    for _, module, name in tensors:
        param = getattr(module, name)
        if param.grad is None:
            raise RuntimeError(f"no gradient reached {module.__class__.__name__}.{name}; cannot score it")
        scores[(module, name)] = (param.detach() * param.grad.detach()).abs()
    model.zero_grad(set_to_none=True)
    return scores


def prune(model: nn.Module, method: str, compression: float, batch=None, loss_fn: Callable | None = None,
          seed: int = 0) -> nn.Module:
    """Prune ``model`` in place to ``compression`` with ``method`` (a name of :data:`METHODS`); return it.

    Gradient methods take one training batch ``(x, y)`` and score ``|w * dL/dw|`` with
    ``loss_fn(model(x), y)`` (cross-entropy on the logits by default). Masks are
    ``torch.nn.utils.prune`` masks, so they stay frozen while fine-tuning.
    """
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; expected one of {list(METHODS)}")
    if is_pruned(model):
        raise ValueError("model already carries pruning masks; prune a dense model (or call make_permanent first)")
    spec = METHODS[method]
    tensors = prunable_tensors(model)
    counts = parameter_counts(model)
    prunable_nonzero = sum(int(torch.count_nonzero(getattr(m, t).detach())) for _, m, t in tensors)
    fraction = keep_fraction(counts["total"], counts["prunable"], compression,
                             unprunable_nonzero=counts["nonzero"] - prunable_nonzero)
    if spec.importance == "random":
        generator = torch.Generator().manual_seed(seed)
        for _, module, name in tensors:
            param = getattr(module, name)
            mask = (torch.rand(param.shape, generator=generator) < fraction).to(param.dtype).to(param.device)
            torch_prune.custom_from_mask(module, name, mask)
        return model
    if spec.importance == "weight":
        scores = {(m, n): getattr(m, n).detach().abs() for _, m, n in tensors}
    else:
        scores = gradient_scores(model, batch, loss_fn, tensors)
    if spec.scope == "global":
        to_prune = int(round((1 - fraction) * counts["prunable"]))
        torch_prune.global_unstructured([(m, n) for _, m, n in tensors], pruning_method=torch_prune.L1Unstructured,
                                        importance_scores=scores, amount=to_prune)
    else:
        for _, module, name in tensors:
            numel = getattr(module, name).numel()
            torch_prune.l1_unstructured(module, name, amount=int(round((1 - fraction) * numel)),
                                        importance_scores=scores[(module, name)])
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights (``prune.remove``): plain tensors with zeros remain."""
    for root in deployed_modules(model):
        for module in root.modules():
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, torch_prune.BasePruningMethod):
                    torch_prune.remove(module, hook._tensor_name)
    return model


def restore_masks(model: nn.Module, state_dict: dict) -> nn.Module:
    """Prepare ``model`` to load a state dict saved with masks (``*_orig`` / ``*_mask`` keys)."""
    modules = dict(model.named_modules())
    for key in state_dict:
        if key.endswith("_mask"):
            module_name, _, tensor = key[: -len("_mask")].rpartition(".")
            module = modules[module_name]
            if not hasattr(module, tensor + "_mask"):
                torch_prune.identity(module, tensor)
    return model


def layer_sparsity(model: nn.Module) -> pd.DataFrame:
    """Per prunable tensor: size, nonzeros and the fraction kept."""
    rows = []
    for qualified, module, name in prunable_tensors(model):
        tensor = getattr(module, name).detach()
        nonzero = int(torch.count_nonzero(tensor))
        rows.append({"tensor": qualified, "numel": tensor.numel(), "nonzero": nonzero,
                     "kept": nonzero / tensor.numel()})
    return pd.DataFrame(rows)
