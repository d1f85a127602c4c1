"""The phone kit: the study's deployable programs in one folder, with a manifest to check and time them on a phone.

``ocular-study export`` puts every artifact of the completed quantization routes (fp32 and int8
ExecuTorch ``.pte`` for XNNPACK, fp32 and int8 ONNX) into ``<out>/`` (hard links to the results' files where
the file system allows, so the kit takes no second copy of the disk; copies elsewhere), converts each route's fp32
parent to Core ML (``.mlpackage``: fp16, and int8 weights) when coremltools is installed, and writes
``manifest.json``: per file its name (use it as ``model`` in a device CSV), route, parent model,
precision, runtime, input size, bytes, SHA-256, and the embedding expected on a fixed input (seeded
normal noise, ``torch.Generator().manual_seed(0)``), so a phone build can be checked before it is
timed. ExecuTorch and ONNX files are run here by their runtimes; Core ML cannot run on Linux, so its
expected output is eager PyTorch's.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_link, atomic_write_json
from ..core.paths import resolve
from ..core.records import display_label, read_record
from . import export

FIXED_INPUT_SEED = 0


def fixed_input(input_size: tuple[int, int]) -> torch.Tensor:
    """The manifest's fixed input: ``randn(1, 3, H, W)`` from ``torch.Generator().manual_seed(0)``."""
    return export.example_input(input_size, seed=FIXED_INPUT_SEED)


def run_artifact(path: str | Path, runtime: str, input_size: tuple[int, int]) -> np.ndarray:
    """The artifact's output on :func:`fixed_input`, computed by its runtime."""
    x = fixed_input(input_size)
    if runtime == "executorch":
        return export.executorch_method(path).execute([x])[0].numpy().copy().ravel()
    session = export.onnx_session(path)
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0].ravel()


def _files(path: Path) -> list[Path]:
    return sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]


def _sha256(path: Path) -> str:
    """SHA-256 of a file, or of a package folder's files in name order (their relative paths included)."""
    digest = hashlib.sha256()
    for file in _files(path):
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in _files(path))


def latency_package(latency_dir: str | Path | None, parent_dir: str | Path, input_size: tuple[int, int]
                    ) -> Path | None:
    """The fp16 Core ML package the latency unit converted of ``parent_dir``'s model at ``input_size``, if it has
    one (in its ``exports``, :func:`ocular_utils.deployment.latency.coreml_package_path`)."""
    from .latency import EXPORT_FOLDER, coreml_package_path

    if latency_dir is None:
        return None
    package = coreml_package_path(resolve(latency_dir) / EXPORT_FOLDER, Path(parent_dir).name, input_size)
    return package if (package / "Manifest.json").is_file() else None


def coreml_entries(parent_dir: str | Path, name: str, input_size: tuple[int, int], out_dir: Path, common: dict,
                   converted: Path | None = None) -> list[dict]:
    """Core ML packages of the fp32 parent in ``out_dir`` (fp16, and int8 weights); manifest entries for both.

    ``converted``: an fp16 package of the same model and input made already (the latency unit's); it is placed
    in the kit (hard links, file by file) instead of converting again.
    """
    from .latency import load_network

    network = load_network(resolve(parent_dir))
    with torch.inference_mode():
        expected = network.eval()(fixed_input(input_size)).numpy().ravel()
    entries = []
    for precision, int8 in (("fp16", False), ("int8 weights, fp16 activations", True)):
        target = out_dir / f"{name}-coreml-{'int8w' if int8 else 'fp16'}.mlpackage"
        shutil.rmtree(target, ignore_errors=True)
        if converted is not None and not int8:
            shutil.copytree(converted, target, copy_function=atomic_link)
        else:
            export.export_coreml(network, target, input_size, int8_weights=int8)
        entries.append(common | {"model": target.stem, "file": target.name, "precision": precision,
                                 "runtime": "coreml", "bytes": _bytes(target), "sha256": _sha256(target),
                                 "expected_output": [round(float(v), 6) for v in expected],
                                 "expected_by": "eager PyTorch fp32 (Core ML does not run on Linux)"})
    return entries


def write_phone_kit(quantized_runs, out_dir: str | Path, coreml: bool | None = None,
                    latency_dir: str | Path | None = None) -> Path:
    """Place the routes' artifacts in ``out_dir`` (hard links where the file system allows, copies elsewhere),
    write its ``manifest.json``; return its path.

    ``coreml``: also convert each route's fp32 parent to Core ML (default: when coremltools is installed;
    ``True`` without it raises). The manifest says when Core ML files were not written and why.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if coreml is None:
        coreml = export.coreml_available()
    elif coreml and not export.coreml_available():
        raise ValueError("Core ML files need coremltools: pip install 'ocular-utils[coreml]' (or pass coreml=False)")
    entries, converted = [], set()
    for run_dir in quantized_runs:
        record = read_record(resolve(run_dir))
        if record is None:
            raise FileNotFoundError(f"quantization run {run_dir} is not complete; run the study first")
        parent = read_record(resolve(record["params"]["parent_dir"]))
        for artifact in record["details"]["artifacts"]:
            source = resolve(artifact["file"])
            name = f"{Path(run_dir).name}-{source.stem}"
            target = out_dir / f"{name}{source.suffix}"
            atomic_link(source, target)
            size = export.size_from_tag(artifact["input"])
            entries.append({
                "model": name, "file": target.name, "route": record["details"]["route"],
                "parent": display_label(parent), "precision": artifact["precision"], "runtime": artifact["runtime"],
                "input_size": artifact["input"], "input_shape": [1, 3, *size], "bytes": target.stat().st_size,
                "sha256": _sha256(target), "synthetic": bool(record.get("synthetic")),
                "expected_output": [round(float(v), 6) for v in run_artifact(target, artifact["runtime"], size)],
                "expected_by": artifact["runtime"]})
        parent_dir = record["params"]["parent_dir"]
        if coreml and parent_dir not in converted:
            converted.add(parent_dir)
            scored = next(a for a in record["details"]["artifacts"] if a.get("scored"))
            size = export.size_from_tag(scored["input"])
            common = {"route": f"{record['details']['route']} (fp32 parent)", "parent": display_label(parent),
                      "input_size": scored["input"], "input_shape": [1, 3, *size],
                      "synthetic": bool(record.get("synthetic"))}
            entries += coreml_entries(parent_dir, Path(run_dir).name, size, out_dir, common,
                                      latency_package(latency_dir, parent_dir, size))
    manifest = {"fixed_input": f"torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed({FIXED_INPUT_SEED}))",
                "tolerance": {"fp32": "max abs difference <= 1e-3", "int8": "cosine to expected_output >= 0.99",
                              "coreml": "cosine to expected_output >= 0.99 (fp16 compute)"},
                "coreml": "written" if coreml else "not written: coremltools is not installed (or coreml=False)",
                "device_csv": "data/device_latency_<yours>.csv with model = the entry's model name",
                "artifacts": entries}
    return atomic_write_json(out_dir / "manifest.json", manifest)
