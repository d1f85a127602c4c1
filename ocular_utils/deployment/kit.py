"""The phone kit: the study's deployable programs in one folder, with a manifest to check and time them on a phone.

``ocular-study export`` copies every artifact of the completed quantization routes (fp32 and int8
ExecuTorch ``.pte`` for XNNPACK, fp32 and int8 ONNX) into ``<out>/``, and writes
``manifest.json``: per file its name (use it as ``model`` in a device CSV), route, parent model,
precision, runtime, input size, bytes, SHA-256, and the embedding this machine's runtime gives on
a fixed input (seeded normal noise, ``torch.Generator().manual_seed(0)``), so a phone build can be
checked before it is timed.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_write_json
from ..core.paths import resolve
from ..report.records import display_label, read_record
from . import export

FIXED_INPUT_SEED = 0


def fixed_input(input_size: tuple[int, int]) -> torch.Tensor:
    """The manifest's fixed input: ``randn(1, 3, H, W)`` from ``torch.Generator().manual_seed(0)``."""
    return torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(FIXED_INPUT_SEED))


def run_artifact(path: str | Path, runtime: str, input_size: tuple[int, int]) -> np.ndarray:
    """The artifact's output on :func:`fixed_input`, computed by its runtime."""
    x = fixed_input(input_size)
    if runtime == "executorch":
        return export.executorch_method(path).execute([x])[0].numpy().copy().ravel()
    session = export.onnx_session(path)
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0].ravel()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_phone_kit(quantized_runs, out_dir: str | Path) -> Path:
    """Copy the routes' artifacts into ``out_dir`` and write its ``manifest.json``; returns the manifest's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for run_dir in quantized_runs:
        record = read_record(resolve(run_dir))
        if record is None:
            raise FileNotFoundError(f"quantization run {run_dir} is not complete; run the study first")
        parent = read_record(resolve(record["params"]["parent_dir"]))
        for artifact in record["details"]["artifacts"]:
            source = resolve(artifact["file"])
            name = f"{Path(run_dir).name}-{source.stem}"
            target = out_dir / f"{name}{source.suffix}"
            shutil.copyfile(source, target)
            size = tuple(int(v) for v in artifact["input"].split("x"))
            entries.append({
                "model": name, "file": target.name, "route": record["details"]["route"],
                "parent": display_label(parent), "precision": artifact["precision"], "runtime": artifact["runtime"],
                "input_size": artifact["input"], "input_shape": [1, 3, *size], "bytes": target.stat().st_size,
                "sha256": _sha256(target), "synthetic": bool(record.get("synthetic")),
                "expected_output": [round(float(v), 6) for v in run_artifact(target, artifact["runtime"], size)]})
    manifest = {"fixed_input": f"torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed({FIXED_INPUT_SEED}))",
                "tolerance": {"fp32": "max abs difference <= 1e-3", "int8": "cosine to expected_output >= 0.99"},
                "device_csv": "data/device_latency_<yours>.csv with model = the entry's model name",
                "artifacts": entries}
    return atomic_write_json(out_dir / "manifest.json", manifest)
