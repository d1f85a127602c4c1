"""Model cost: parameters, nonzero parameters, compression ratio, and MACs as ShrinkBench counts them.

Counts cover the *deployed* network (backbone + embedding, :func:`~ocular_utils.models.networks.deployed_parts`);
the training-only head is excluded. Pruning masks are applied (a masked weight counts as zero).
MACs are counted for ``Conv2d`` and ``Linear`` layers at batch 1: a convolution costs
``out_h * out_w * weight.numel()`` (= ``out_h * out_w * C_out * C_in / groups * k_h * k_w``), a linear
layer ``weight.numel()``. The *nonzero* variant counts only nonzero weights (what an ideal sparse
kernel would execute; dense kernels execute the dense count). Other layers (BatchNorm, activations,
pooling) are not counted.
"""
from __future__ import annotations

import torch
from torch import nn

from .networks import deployed_parts


def effective_tensors(module: nn.Module):
    """``(name, tensor)`` of a module's own parameters as used in forward (pruning masks applied)."""
    for name, param in module.named_parameters(recurse=False):
        if name.endswith("_orig"):
            base = name[: -len("_orig")]
            yield base, getattr(module, base)
        else:
            yield name, param


def prunable_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(qualified name, module, 'weight'|'bias')`` of every Conv2d / Linear tensor of the deployed network."""
    found = []
    for prefix, root in deployed_parts(model):
        for name, module in root.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                for tensor in ("weight", "bias"):
                    if getattr(module, tensor, None) is not None:
                        found.append((".".join(p for p in (prefix, name, tensor) if p), module, tensor))
    return found


def parameter_counts(model: nn.Module) -> dict:
    """Total, prunable (Conv2d / Linear) and nonzero parameters of the deployed network (masks applied)."""
    total = nonzero = 0
    for _, root in deployed_parts(model):
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


def count_macs(network: nn.Module, input_size: tuple[int, int]) -> dict:
    """Dense and nonzero-weighted MACs of one forward pass at batch 1 and ``input_size`` = (H, W)."""
    totals = {"macs": 0, "nonzero_macs": 0}

    def hook(module, _inputs, output):
        weight = module.weight.detach()
        positions = output.shape[2] * output.shape[3] if isinstance(module, nn.Conv2d) else 1
        totals["macs"] += positions * weight.numel()
        totals["nonzero_macs"] += positions * int(torch.count_nonzero(weight))

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = network.training
    network.eval()
    try:
        device = next(network.parameters()).device
        with torch.inference_mode():
            network(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        network.train(was_training)
    return totals


def model_cost(network: nn.Module, input_size: tuple[int, int]) -> dict:
    """Parameters, nonzero parameters, dense and nonzero MACs of a deployed (embedding) network."""
    counts = parameter_counts(network)
    return {"params": counts["total"], "nonzero_params": counts["nonzero"]} | count_macs(network, input_size)


def check_nonzero(model: nn.Module, expected: int, tolerance: float = 0.001) -> None:
    """Raise unless the deployed network still has ``expected`` nonzero parameters (within ``tolerance``).

    After fine-tuning with frozen masks the sparsity pattern must not have changed.
    """
    nonzero = parameter_counts(model)["nonzero"]
    if abs(nonzero - expected) > tolerance * expected:
        raise RuntimeError(f"fine-tuning changed the sparsity pattern: {nonzero:,} nonzero parameters, "
                           f"expected {expected:,}")
