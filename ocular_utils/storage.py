"""Model files: dense state dicts, and a sparse format that shows unstructured compression on disk.

The sparse format stores each mostly-zero tensor as a packed bit mask (1 bit per entry) plus its
nonzero values (float32, or float16 with ``half=True``); other tensors stay dense. It is a plain
dict of tensors, so it loads with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import torch

from .io import atomic_torch_save, load_state

SPARSE_MIN_ZEROS = 0.25  # tensors with fewer zeros than this stay dense


def _pack(tensor: torch.Tensor, half: bool) -> dict:
    flat = tensor.detach().cpu().reshape(-1)
    mask = flat != 0
    values = flat[mask]
    if half and values.is_floating_point():
        values = values.half()
    return {"mask": torch.from_numpy(np.packbits(mask.numpy())), "values": values.clone(),
            "shape": torch.tensor(list(tensor.shape), dtype=torch.int64), "dtype_is_half": torch.tensor(half)}


def _unpack(packed: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    shape = tuple(int(s) for s in packed["shape"])
    numel = int(np.prod(shape)) if shape else 1
    mask = torch.from_numpy(np.unpackbits(packed["mask"].numpy())[:numel].astype(bool))
    flat = torch.zeros(numel, dtype=dtype)
    flat[mask] = packed["values"].to(dtype)
    return flat.reshape(shape)


def sparse_state_dict(state_dict: dict, half: bool = False) -> dict:
    """Encode a (pruned, masks folded in) state dict in the sparse format."""
    dense, sparse = {}, {}
    for key, tensor in state_dict.items():
        if key.endswith("_mask") or key.endswith("_orig"):
            raise ValueError(f"state dict still holds pruning reparametrization ({key}); call make_permanent first")
        if tensor.is_floating_point() and tensor.numel() > 64 and \
                (tensor == 0).float().mean().item() >= SPARSE_MIN_ZEROS:
            sparse[key] = _pack(tensor, half)
        else:
            dense[key] = tensor.detach().cpu().half() if half and tensor.is_floating_point() else tensor.detach().cpu()
    return {"format": "ocular-sparse-v1", "dense": dense, "sparse": sparse, "half": half}


def dense_from_sparse(encoded: dict) -> dict:
    """Decode :func:`sparse_state_dict` output back to a float32 state dict."""
    if encoded.get("format") != "ocular-sparse-v1":
        raise ValueError("not an ocular-sparse-v1 file")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in encoded["dense"].items()}
    state.update({k: _unpack(v) for k, v in encoded["sparse"].items()})
    return state


def save_state_dict(state_dict: dict, path: str | os.PathLike, sparse: bool = False, half: bool = False) -> int:
    """Save a state dict (dense, or sparse-encoded) atomically; return the file's size in bytes."""
    payload = sparse_state_dict(state_dict, half) if sparse else {k: v.detach().cpu() for k, v in state_dict.items()}
    atomic_torch_save(payload, path)
    return Path(path).stat().st_size


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Load a file written by :func:`save_state_dict` (either format) as a float32 state dict."""
    payload = load_state(path)
    if isinstance(payload, dict) and payload.get("format") == "ocular-sparse-v1":
        return dense_from_sparse(payload)
    return payload


def serialized_size(state_dict: dict, sparse: bool = False, half: bool = False, compress: bool = False) -> int:
    """Bytes of the state dict as it would be saved (optionally gzip-compressed)."""
    buffer = io.BytesIO()
    payload = sparse_state_dict(state_dict, half) if sparse else state_dict
    torch.save(payload, buffer)
    data = buffer.getvalue()
    return len(gzip.compress(data, compresslevel=6)) if compress else len(data)
