"""Unstructured pruning with ShrinkBench's semantics, expressed with ``torch.nn.utils.prune`` masks.

* Prunable: the weights and biases of every ``Conv2d`` and ``Linear`` of the *deployed embedding
  network* (backbone + embedding layer; the first conv and the embedding layer included). The
  training-only classification head is neither pruned nor counted. BatchNorm is never pruned but
  counts in the total.
* Compression ``c = total / nonzero`` over the deployed network; the fraction of prunable
  parameters kept is ``f = (total / c - (total - prunable)) / prunable`` and must lie in (0, 1].
* A method is a score function and a scope, registered with :func:`register_unstructured`:
  ``|w|`` (weight) or ``|w * dL/dw|`` on one training batch (gradient), kept by one global
  threshold (``global``), the same ``f`` in every tensor (``layer``), or each entry kept with
  probability ``f`` (``bernoulli``: random pruning, so its ratio is approximate).
"""
from __future__ import annotations

import copy
import numbers
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..models.counting import parameter_counts, prunable_tensors
from ..models.networks import deployed_parts
from .registry import UNSTRUCTURED, CompressionContext, CompressionMethod, get_method, register

SCOPES = ("global", "layer", "bernoulli")
MEANINGFUL_UP_TO = 64.0  # beyond it under 1.6% of the weights remain; models are expected to collapse to chance
# A score function: (model, prunable tensors, context) -> {(module, tensor name): scores of that tensor's shape}
ScoreFunction = Callable[[nn.Module, list, CompressionContext], dict]


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
    return any(torch_prune.is_pruned(m) for _, m in deployed_parts(model))


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


def random_scores(model: nn.Module, tensors: list, context: CompressionContext) -> dict:
    """Uniform random scores in [0, 1), seeded by ``context.seed`` (for the ``bernoulli`` scope)."""
    generator = torch.Generator().manual_seed(context.seed)
    return {(m, n): torch.rand(getattr(m, n).shape, generator=generator) for _, m, n in tensors}


def weight_scores(model: nn.Module, tensors: list, context: CompressionContext) -> dict:
    """Magnitude ``|w|``."""
    return {(m, n): getattr(m, n).detach().abs() for _, m, n in tensors}


def gradient_scores(model: nn.Module, tensors: list, context: CompressionContext) -> dict:
    """``|w * dL/dw|`` of every prunable tensor for one training batch (BatchNorm statistics left unchanged)."""
    batch_gradients(model, context.batch, context.loss_fn, "gradient pruning")
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
    """Prune ``model`` **in place** to ``compression`` with an unstructured ``method``; return it.

    Gradient methods take one training batch ``(x, y)`` and score ``|w * dL/dw|`` with
    ``loss_fn(model(x), y)`` (cross-entropy on the logits by default). Masks are
    ``torch.nn.utils.prune`` masks, so they stay frozen while fine-tuning.
    """
    parts = get_method(method, UNSTRUCTURED).parts
    if is_pruned(model):
        raise ValueError("model already carries pruning masks; prune a dense model (or call make_permanent first)")
    score, scope = parts["score"], parts["scope"]
    tensors = prunable_tensors(model)
    counts = parameter_counts(model)
    prunable_nonzero = sum(int(torch.count_nonzero(getattr(m, t).detach())) for _, m, t in tensors)
    fraction = keep_fraction(counts["total"], counts["prunable"], compression,
                             unprunable_nonzero=counts["nonzero"] - prunable_nonzero)
    scores = score(model, tensors, CompressionContext(batch=batch, seed=seed, loss_fn=loss_fn))
    if scope == "bernoulli":
        for _, module, name in tensors:
            param = getattr(module, name)
            mask = (scores[(module, name)] < fraction).to(param.dtype).to(param.device)
            torch_prune.custom_from_mask(module, name, mask)
    elif scope == "global":
        to_prune = int(round((1 - fraction) * counts["prunable"]))
        torch_prune.global_unstructured([(m, n) for _, m, n in tensors], pruning_method=torch_prune.L1Unstructured,
                                        importance_scores=scores, amount=to_prune)
    else:
        for _, module, name in tensors:
            numel = getattr(module, name).numel()
            torch_prune.l1_unstructured(module, name, amount=int(round((1 - fraction) * numel)),
                                        importance_scores=scores[(module, name)])
    return model


def register_unstructured(name: str, scope: str, description: str = "") -> Callable[[ScoreFunction], ScoreFunction]:
    """Decorator: register a score function as unstructured method ``name`` with ``scope`` (see :data:`SCOPES`)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")

    def decorate(score: ScoreFunction) -> ScoreFunction:
        def apply(model: nn.Module, compression: float, context: CompressionContext) -> nn.Module:
            pruned = prune(copy.deepcopy(model), name, compression, batch=context.batch, loss_fn=context.loss_fn,
                           seed=context.seed)
            return keep_zeros_frozen(pruned)

        register(CompressionMethod(name, UNSTRUCTURED, apply, sparse_storage=True, meaningful_up_to=MEANINGFUL_UP_TO,
                                   description=description or (score.__doc__ or "").strip(),
                                   parts={"score": score, "scope": scope}))
        return score

    return decorate


# The five methods of the paper (ShrinkBench's baselines).
register_unstructured("random", "bernoulli", "random: each entry kept with probability f")(random_scores)
register_unstructured("global_weight", "global", "|w|, one threshold over all tensors")(weight_scores)
register_unstructured("layer_weight", "layer", "|w|, the same fraction in every tensor")(weight_scores)
register_unstructured("global_gradient", "global", "|w dL/dw|, one threshold over all tensors")(gradient_scores)
register_unstructured("layer_gradient", "layer", "|w dL/dw|, the same fraction in every tensor")(gradient_scores)


def pruned_tensors(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every ``(module, tensor name)`` of ``model`` that carries a ``torch.nn.utils.prune`` mask."""
    return [(module, hook._tensor_name) for _, root in deployed_parts(model) for module in root.modules()
            for hook in list(module._forward_pre_hooks.values()) if isinstance(hook, torch_prune.BasePruningMethod)]


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights (``prune.remove``), in place: plain tensors with zeros remain."""
    for module, name in pruned_tensors(model):
        torch_prune.remove(module, name)
    return model


def keep_zeros_frozen(model: nn.Module) -> nn.Module:
    """Fold the masks into the weights and keep the pruned entries at zero while training (in place).

    Instead of recomputing ``weight = weight_orig * mask`` in every forward pass (what the masks of
    ``torch.nn.utils.prune`` do), the weights hold their zeros and a gradient hook multiplies each
    pruned tensor's gradient by its mask. With zero gradient and zero weight, SGD (momentum, weight
    decay) and AdamW leave a pruned entry exactly zero, and kept entries get the same gradients as
    under the masks, so training is the same at the speed of a dense network.
    """
    masks = {(module, name): getattr(module, name + "_mask").detach().clone() for module, name in pruned_tensors(model)}
    make_permanent(model)
    for (module, name), mask in masks.items():
        getattr(module, name).register_hook(lambda grad, mask=mask: grad * mask)
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
