"""Model cost: parameters, nonzero parameters, and multiply-accumulates as ShrinkBench counts them.

MACs are counted for ``Conv2d`` and ``Linear`` layers at batch 1: a convolution costs
``out_h * out_w * weight.numel()`` (= ``out_h * out_w * C_out * C_in / groups * k_h * k_w``), a linear
layer ``weight.numel()``. The *nonzero* variant counts only nonzero weights (what an ideal sparse
kernel would execute; dense kernels execute the dense count). Other layers (BatchNorm, activations,
pooling) are not counted.
"""
from __future__ import annotations

import torch
from torch import nn

from .pruning import parameter_counts


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
