"""Model files: a saved model is a state dict plus a spec (``<name>.json``) that rebuilds its architecture.

Formats: a dense state dict (``<name>.pt``), or a sparse one (``<name>.sparse.pt``) that shows
unstructured compression on disk. Channel-pruned models (smaller tensors than their architecture)
reload by resizing the freshly built modules to the saved tensors. Everything loads with
``torch.load(..., weights_only=True)``.

The sparse format stores each mostly-zero tensor as a packed bit mask (1 bit per entry) plus its
nonzero values (float32, or float16 with ``half=True``); other tensors stay dense. It is a plain
dict of tensors, so it loads with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.atomic import atomic_torch_save, atomic_write_json, load_state
from .counting import parameter_counts
from .networks import OcularNet, build_model

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


def file_payload(state_dict: dict, sparse: bool = False, half: bool = False) -> dict:
    """What a model file holds: the state dict on the CPU, or its sparse encoding (:func:`sparse_state_dict`)."""
    return sparse_state_dict(state_dict, half) if sparse else {k: v.detach().cpu() for k, v in state_dict.items()}


def save_state_dict(state_dict: dict, path: str | os.PathLike, sparse: bool = False, half: bool = False) -> int:
    """Save a state dict (dense, or sparse-encoded) atomically; return the file's size in bytes."""
    atomic_torch_save(file_payload(state_dict, sparse, half), path)
    return Path(path).stat().st_size


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Load a file written by :func:`save_state_dict` (either format) as a float32 state dict."""
    payload = load_state(path)
    if isinstance(payload, dict) and payload.get("format") == "ocular-sparse-v1":
        return dense_from_sparse(payload)
    return payload


def serialized_size(state_dict: dict, sparse: bool = False, half: bool = False, compress: bool = False) -> int:
    """Bytes of the state dict as it would be saved (optionally gzip-compressed)."""
    return payload_size(sparse_state_dict(state_dict, half) if sparse else state_dict, compress)


def payload_size(payload: dict, compress: bool = False) -> int:
    """Bytes of ``payload`` (a state dict, or one already sparse-encoded) as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    return len(gzip.compress(data, compresslevel=6)) if compress else len(data)


def halved(encoded: dict) -> dict:
    """The float16 version of a float32 :func:`sparse_state_dict` encoding, without encoding again:
    equal to ``sparse_state_dict(state, half=True)`` (only floating-point tensors are ever packed)."""
    sparse = {key: packed | {"values": packed["values"].half(), "dtype_is_half": torch.tensor(True)}
              for key, packed in encoded["sparse"].items()}
    dense = {key: tensor.half() if tensor.is_floating_point() else tensor for key, tensor in encoded["dense"].items()}
    return {"format": encoded["format"], "dense": dense, "sparse": sparse, "half": True}


def select_keys(encoded: dict, keep) -> dict:
    """The :func:`sparse_state_dict` encoding of only the entries whose key ``keep(key)`` accepts
    (each tensor is encoded on its own, so this equals encoding the selected state dict)."""
    return encoded | {part: {k: v for k, v in encoded[part].items() if keep(k)} for part in ("dense", "sparse")}


def reshape_to_state_dict(model: nn.Module, state_dict: dict) -> nn.Module:
    """Resize the Conv2d / Linear / BatchNorm modules of a freshly built ``model`` to a saved (pruned) state dict.

    This is how channel-pruned checkpoints reload from plain state dicts (``weights_only=True``).
    Works in place and returns ``model``.
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


def model_spec(model: OcularNet, resized: bool = False, sparse: bool = False, identities: str | None = None) -> dict:
    """What is needed to rebuild ``model`` before loading its state dict (and which file holds it).

    ``resized``: the tensors are smaller than the architecture's (channel pruning). ``identities`` is
    :attr:`~ocular_utils.data.protocols.Split.identity_hash` of the training split: the head's class order.
    """
    return {"backbone": model.backbone_name, "embedding_dim": model.embedding_dim,
            "num_classes": model.head.out_features, "head": "linear" if isinstance(model.head, torch.nn.Linear)
            else "cosine", "resized": resized, "format": "sparse" if sparse else "dense",
            "identities": identities}


def _deployed(key: str) -> bool:
    """Whether a state-dict entry belongs to the deployed network (the training head does not)."""
    return not key.startswith("head.")


def save_model(model: OcularNet, run_dir: str | Path, name: str = "model", resized: bool = False,
               sparse: bool = False, gzip_size: bool = False, identities: str | None = None) -> dict:
    """Save the model as ``<name>.pt`` (dense) or ``<name>.sparse.pt`` (bit mask + nonzeros) + ``<name>.json``.

    Masks must be folded in first (:func:`ocular_utils.compression.unstructured.make_permanent`).
    Returns the file's size and the sizes of the *deployed* network (head excluded) as dense, sparse
    and half-precision sparse files (and gzip-compressed dense with ``gzip_size``), measured by
    serializing them.
    """
    run_dir = Path(run_dir)
    state = model.state_dict()  # sizes measured as before: a tensor's device is part of what torch.save writes
    file = run_dir / (f"{name}.sparse.pt" if sparse else f"{name}.pt")
    payload = file_payload(state, sparse)  # encoded once: the file and the sparse sizes below
    atomic_torch_save(payload, file)
    sizes = {"file_bytes": file.stat().st_size}
    deployed = {k: v for k, v in state.items() if _deployed(k)}
    sizes["deployed_dense_bytes"] = payload_size(deployed)
    if gzip_size:
        sizes["deployed_dense_gzip_bytes"] = payload_size(deployed, compress=True)
    if sparse:
        deployed_encoded = select_keys(payload, _deployed)
        sizes["deployed_sparse_bytes"] = payload_size(deployed_encoded)
        sizes["deployed_sparse_half_bytes"] = payload_size(halved(deployed_encoded))
    atomic_write_json(run_dir / f"{name}.json", model_spec(model, resized, sparse, identities))
    return sizes


def read_spec(run_dir: str | Path, name: str = "model") -> dict:
    """The spec (architecture, file format, training identities) saved next to a model."""
    spec_path = Path(run_dir) / f"{name}.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} does not exist: {run_dir} holds no saved model {name!r}")
    return json.loads(spec_path.read_text())


def load_model(run_dir: str | Path, name: str = "model", device: torch.device | str = "cpu") -> OcularNet:
    """Rebuild and load a model saved by :func:`save_model` (``weights_only=True``), in eval mode."""
    run_dir = Path(run_dir)
    spec = read_spec(run_dir, name)
    model = build_model(spec["backbone"], spec["num_classes"], spec["embedding_dim"], head=spec["head"])
    sparse = spec.get("format") == "sparse"
    state = load_state_dict_file(run_dir / (f"{name}.sparse.pt" if sparse else f"{name}.pt"))
    if spec.get("resized"):
        reshape_to_state_dict(model, state)
    else:
        model.load_state_dict(state)
    return model.to(device).eval()


def verify_reload(model: OcularNet, run_dir: str | Path, images: torch.Tensor) -> dict:
    """Reload the saved model from its file; check that nonzeros and embeddings of ``images`` match.

    ``model`` is compared in eval mode and left in the mode it was in.
    """
    device = images.device
    was_training = model.training
    model.eval()
    loaded = load_model(run_dir, device=device)
    with torch.inference_mode():
        difference = float((loaded.embed(images) - model.embed(images)).abs().max())
    model.train(was_training)
    expected, nonzero = parameter_counts(model)["nonzero"], parameter_counts(loaded)["nonzero"]
    if nonzero != expected or difference > 1e-4:
        raise RuntimeError(f"reloaded model differs: {nonzero} vs {expected} nonzeros, "
                           f"max embedding difference {difference:.3g}")
    return {"reload_max_abs_diff": difference, "reload_nonzero": expected}
