"""Post-training static int8 quantization for the phone runtimes, calibrated on training images only.

* ExecuTorch (XNNPACK): torchao's PT2E flow (``prepare_pt2e`` / ``convert_pt2e``) with ExecuTorch's
  ``XNNPACKQuantizer`` (symmetric int8, per-channel weights), lowered with ``XnnpackPartitioner``.
  Every quantized operator must be delegated to XNNPACK (:func:`check_delegation`), otherwise the
  program would not run in the prebuilt runtime.
* ONNX Runtime: ``quantize_static`` in QDQ format with per-channel int8 weights, same calibration images.

The EER of a quantized model is measured by embedding the test images *through the runtime*
(:func:`embed_executorch`, :func:`embed_onnx`), never with fake quantization in eager PyTorch.
"""
from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..compression.routes import ROUTES, get_route
from ..core.atomic import atomic_path, atomic_write_bytes
from ..core.config import Settings
from ..core.environment import logger_level
from ..data.images import ImageStore, iterate_images
from . import export


@dataclass
class QuantizationConfig(Settings):
    """The ``quantization`` section: calibration of post-training static int8."""

    calibration_images: int = 256  # training images only (a guard refuses validation and test images)
    calibration_batch: int = 32
    per_channel: bool = True  # per-channel symmetric int8 weights (ExecuTorch and ONNX Runtime)
    routes: list = field(default_factory=lambda: list(ROUTES))  # names of ocular_utils.compression.routes.ROUTES
    student_loss: str = "logit"  # the students the student routes start from
    student_channel_method: str = "channel_magnitude"  # how student+channel+int8 prunes the student
    student_channel_compression: float = 2

    def __post_init__(self):
        if self.calibration_images < 1 or self.calibration_batch < 1:
            raise ValueError("quantization.calibration_images and calibration_batch must be at least 1 "
                             f"(got {self.calibration_images}, {self.calibration_batch})")
        for route in self.routes:
            get_route(route)

    def recipe(self) -> dict:
        """What one quantization unit uses (calibration only; the routes are the grid's business)."""
        return {"calibration_images": self.calibration_images, "calibration_batch": self.calibration_batch,
                "per_channel": self.per_channel}


class CalibrationError(ValueError):
    """Calibration would use images of validation or test subjects, or more images than training has."""


class DelegationError(RuntimeError):
    """A quantized operator of an exported program is not delegated to XNNPACK."""


def calibration_frame(split, count: int, seed: int = 0) -> pd.DataFrame:
    """``count`` seeded training images of ``split`` for calibration (checked by :func:`check_calibration`)."""
    train = split.train
    if count > len(train):
        raise CalibrationError(f"quantization.calibration_images = {count} but the training split has only "
                               f"{len(train)} images; choose at most {len(train)}")
    frame = train.sample(count, random_state=seed).reset_index(drop=True)
    check_calibration(frame, split)
    return frame


def check_calibration(frame: pd.DataFrame, split) -> None:
    """Refuse calibration images of validation or test subjects (or outside the training split)."""
    for part in ("val", "test"):
        held_out = getattr(split, part)
        shared = frame[frame["path"].isin(held_out["path"]) | frame["subject"].isin(held_out["subject"])]
        if len(shared):
            raise CalibrationError(f"{len(shared)} calibration images belong to {part} subjects (e.g. "
                                   f"{shared['path'].iloc[0]}); calibration may use training images only")
    outside = frame[~frame["path"].isin(split.train["path"])]
    if len(outside):
        raise CalibrationError(f"{len(outside)} calibration images are not training images (e.g. "
                               f"{outside['path'].iloc[0]})")


def calibration_batches(store: ImageStore, frame: pd.DataFrame, batch_size: int,
                        size: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """The calibration images as contiguous NCHW batches (resized to ``size`` when given)."""
    batches = []
    for batch in iterate_images(store, frame, batch_size):
        if size is not None and tuple(batch.shape[-2:]) != tuple(size):
            batch = nn.functional.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False)
        batches.append(batch.contiguous())
    return batches


@logger_level("torch.utils._pytree", logging.ERROR)
def quantize_pt2e(network: nn.Module, batches: list[torch.Tensor], per_channel: bool = True) -> nn.Module:
    """PT2E static int8 of ``network`` (eval, CPU) for XNNPACK, calibrated on ``batches``."""
    with export.quiet_native_logs():
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    network = network.eval().cpu()
    example = batches[0][:2] if len(batches[0]) > 1 else torch.cat([batches[0], batches[0]])
    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(network, (example,), dynamic_shapes=({0: batch},)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for images in batches:
            prepared(images)
    return convert_pt2e(prepared)


def _is_quantized_operator(name: str) -> bool:
    return any(token in name for token in ("quantize", "quantized", "int8", "qint", "q8"))


def check_delegation(graph_module) -> list[str]:
    """Operators left outside XNNPACK delegates; raises :class:`DelegationError` if a quantized one is among them.

    Returns the names of the non-delegated, non-quantized operators (e.g. memory-format copies),
    which run on ExecuTorch's portable kernels.
    """
    outside = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(getattr(node.target, "__name__", node.target)).split(":")[0]
        if "executorch_call_delegate" in name or name in ("getitem", "<built-in function getitem>"):
            continue
        outside.append(name)
    quantized = sorted({name for name in outside if _is_quantized_operator(name)})
    if quantized:
        raise DelegationError(f"quantized operators not delegated to XNNPACK: {quantized}; the program would "
                              "not run in the prebuilt runtime (the network uses an operator XNNPACK cannot run "
                              "in int8)")
    return sorted(set(outside))


def lower_executorch(quantized: nn.Module, path: str | Path, input_size: tuple[int, int]) -> list[str]:
    """Lower a quantized (or float) module to an XNNPACK ``.pte`` at batch 1; returns non-delegated operators."""
    edge = export.lower_to_xnnpack(quantized, input_size)
    outside = check_delegation(edge.exported_program().graph_module)
    atomic_write_bytes(Path(path), export.executorch_buffer(edge))
    return outside


class _Calibration:
    """ONNX Runtime's calibration reader over fixed batches (``onnxruntime.quantization.CalibrationDataReader``)."""

    def __init__(self, name: str, batches: list[torch.Tensor]):
        self.name, self.batches = name, iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.name: batch.numpy()}


def quantize_onnx(fp32_path: str | Path, path: str | Path, batches: list[torch.Tensor], per_channel: bool = True
                  ) -> Path:
    """Static int8 (QDQ, int8 activations and weights) of an ONNX file, calibrated on ``batches``; written
    atomically."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("Reader", (_Calibration, CalibrationDataReader), {})
    path = Path(path)
    prepared = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.pre.onnx")  # beside the output, never shared
    try:
        quant_pre_process(str(fp32_path), str(prepared))
        name = export.onnx_session(prepared).get_inputs()[0].name
        with atomic_path(path) as tmp:
            quantize_static(str(prepared), tmp, reader(name, batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
    return path


def _normalized(rows: list[np.ndarray]) -> np.ndarray:
    embeddings = np.concatenate(rows).astype(np.float32)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def embed_executorch(path: str | Path, store: ImageStore, frame: pd.DataFrame) -> np.ndarray:
    """L2-normalized embeddings of ``frame``'s images through the ``.pte`` in ExecuTorch's runtime (batch 1).

    Inputs are made contiguous NCHW (the runtime reads raw memory) and outputs copied (the runtime
    reuses its output buffer).
    """
    method = export.executorch_method(path)
    rows = []
    for batch in iterate_images(store, frame, 64):
        for image in batch.contiguous():
            rows.append(method.execute([image[None].contiguous()])[0].numpy().copy())
    return _normalized(rows)


def embed_onnx(path: str | Path, store: ImageStore, frame: pd.DataFrame, threads: int = 1) -> np.ndarray:
    """L2-normalized embeddings of ``frame``'s images through the ONNX file in ONNX Runtime."""
    session = export.onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return _normalized([session.run(None, {name: batch.contiguous().numpy()})[0]
                        for batch in iterate_images(store, frame, 64)])


def min_cosine(embeddings: np.ndarray, reference: np.ndarray) -> float:
    """The smallest per-image cosine between two sets of L2-normalized embeddings (same image order)."""
    if embeddings.shape != reference.shape:
        raise ValueError(f"embeddings of shape {embeddings.shape} and {reference.shape} cannot be compared")
    return float(np.einsum("ij,ij->i", embeddings, reference).min())


def sparse_int8_bytes(network: nn.Module, path: str | Path) -> int:
    """Write the network's weights as sparse int8 (bit mask + int8 nonzeros + per-channel scales); return bytes.

    Weight tensors (2 or more dimensions) are quantized symmetric per output channel; the other
    tensors stay float32. Size only: dense kernels cannot run this format faster.
    """
    payload = {}
    for key, tensor in network.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point() and tensor.dim() >= 2:
            scale = tensor.abs().reshape(len(tensor), -1).amax(1).clamp_min(1e-12) / 127
            values = torch.round(tensor / scale.reshape(-1, *[1] * (tensor.dim() - 1))).to(torch.int8).reshape(-1)
            mask = values != 0
            payload[key] = {"mask": torch.from_numpy(np.packbits(mask.numpy())), "values": values[mask].clone(),
                            "scale": scale.float(), "shape": torch.tensor(tensor.shape)}
        else:
            payload[key] = tensor
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return len(buffer.getvalue())
