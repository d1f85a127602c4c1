"""A route's phone artifacts: the fp32 and int8 ExecuTorch and ONNX files of a parent model at each input size.

For each input size a quantization unit writes four files: the fp32 and int8 ExecuTorch programs (``.pte``,
XNNPACK) and the fp32 and int8 ONNX files. At the study's input the int8 artifacts are calibrated on
``calibration_images`` training images (and then scored: :mod:`.runtime_scoring`); at other sizes (latency
only, never scored) the first calibration batch, resized, is used.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import nn

from . import export, quantize

RUNTIME_FILES = {"executorch": ".pte", "onnxruntime": ".onnx"}


def write_artifacts(network: nn.Module, data, calibration: pd.DataFrame, config: quantize.QuantizationConfig,
                    input_sizes, out_dir: str | Path) -> pd.DataFrame:
    """fp32 and int8 ``.pte`` and ``.onnx`` files of ``network`` at each input size; one row per file.

    The int8 ``.pte`` passes the delegation check (its non-delegated float operators are listed in
    ``outside_delegate``). fp32 files are checked against eager PyTorch (``max_abs_diff``).
    """
    out_dir = Path(out_dir)
    study_size = tuple(data.image_size)
    rows = []
    for size in map(tuple, input_sizes):
        tag = export.size_tag(size)
        batches = quantize.calibration_batches(data.store, calibration, config.calibration_batch, size)
        if size != study_size:
            batches = batches[:1]  # latency only: one batch sets the ranges
        calibrated = sum(len(b) for b in batches)
        int8 = quantize.quantize_pt2e(network, batches, config.per_channel)
        outside = quantize.lower_executorch(int8, out_dir / f"int8-{tag}.pte", size)
        fp32_pte = export.export_executorch(network, out_dir / f"fp32-{tag}.pte", size)
        fp32_onnx = export.export_onnx(network, out_dir / f"fp32-{tag}.onnx", size)
        quantize.quantize_onnx(fp32_onnx, out_dir / f"int8-{tag}.onnx", batches, config.per_channel)
        pte_diff = export.verify_executorch(network, fp32_pte, size)
        onnx_diff = export.verify_onnx(network, fp32_onnx, size)
        for runtime, suffix in RUNTIME_FILES.items():
            for precision in ("fp32", "int8"):
                path = out_dir / f"{precision}-{tag}{suffix}"
                rows.append({"runtime": runtime, "precision": precision, "input": tag, "file": str(path),
                             "bytes": path.stat().st_size, "calibration_images": calibrated if precision == "int8"
                             else None, "scored": size == study_size,
                             "max_abs_diff": {"executorch": pte_diff, "onnxruntime": onnx_diff}[runtime]
                             if precision == "fp32" else None,
                             "outside_delegate": ", ".join(outside) if runtime == "executorch" and
                             precision == "int8" else None})
    return pd.DataFrame(rows)


def artifact_sizes(study_size, input_sizes) -> list[list[int]]:
    """The input sizes a route writes artifacts for: the study's input first (it is scored), then the others."""
    return [list(study_size)] + [list(s) for s in input_sizes if tuple(s) != tuple(study_size)]
