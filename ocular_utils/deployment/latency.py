"""Feature-extraction latency of the deployed embedding network, per runtime, at batch 1.

Warm-up, then timed repeats until both ``repeats`` runs and ``min_seconds`` have passed (capped
by ``max_seconds``); min / median / p90 in milliseconds. Thread counts are fixed for the
measurement and restored afterwards; 1 thread is the mobile-like figure. Runtimes are timed one
after another, never interleaved (idle runtime threads slow the next call).
"""
from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.atomic import atomic_write_bytes
from ..core.config import Settings
from ..core.environment import thread_count
from ..core.paths import resolve
from ..models.files import load_model
from ..models.networks import deployed_network
from . import export

RUNTIMES = ("eager", "onnxruntime", "executorch")


@dataclass
class LatencyConfig(Settings):
    """The ``latency`` section: where and how feature extraction is timed, and which models get every runtime."""

    input_sizes: list = field(default_factory=lambda: [[32, 48], [224, 224]])  # the first is the study's input
    runtimes: list = field(default_factory=lambda: list(RUNTIMES))
    detail_compression: float = 8
    detail_methods: list = field(default_factory=lambda: ["layer_weight", "channel_magnitude", "channel_taylor"])
    threads: int = 1
    repeats: int = 20
    warmup: int = 3
    max_seconds: float = 10.0
    coreml: bool = True

    def __post_init__(self):
        unknown = sorted(set(self.runtimes) - set(RUNTIMES))
        if unknown:
            raise ValueError(f"latency.runtimes: unknown runtimes {unknown}; expected some of {list(RUNTIMES)}")

    def timing(self) -> dict:
        """Keyword arguments of :func:`time_callable`."""
        return {"warmup": self.warmup, "repeats": self.repeats, "max_seconds": self.max_seconds}


@dataclass
class Timing:
    """Latency statistics in milliseconds."""

    min_ms: float
    median_ms: float
    p90_ms: float
    mean_ms: float
    repeats: int
    warmup: int


def time_callable(fn: Callable[[], object], warmup: int = LatencyConfig.warmup, repeats: int = LatencyConfig.repeats,
                  min_seconds: float = 0.0, max_seconds: float = LatencyConfig.max_seconds,
                  clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``repeats`` timed calls and ``min_seconds``.

    Stops early (after at least 3 timed calls) once ``max_seconds`` of timed calls have passed.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats >= 1 and warmup >= 0 are required (got {repeats}, {warmup})")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    spent = 0.0
    while True:
        start = clock()
        fn()
        elapsed = clock() - start
        samples.append(elapsed * 1000)
        spent += elapsed
        enough = len(samples) >= repeats and spent >= min_seconds
        if enough or (spent >= max_seconds and len(samples) >= 3):
            break
    values = np.array(samples)
    return Timing(float(values.min()), float(np.median(values)), float(np.percentile(values, 90)),
                  float(values.mean()), len(samples), warmup)


def time_eager(network: nn.Module, input_size: tuple[int, int], threads: int = LatencyConfig.threads,
               **timing) -> Timing:
    """Eager PyTorch, eval mode, inference mode, ``threads`` intra-op threads."""
    network = network.eval().cpu()
    x = export.example_input(input_size)
    with thread_count(threads), torch.inference_mode():
        return time_callable(lambda: network(x), **timing)


def time_onnx(path: str | Path, input_size: tuple[int, int], threads: int = LatencyConfig.threads, **timing) -> Timing:
    """ONNX Runtime on the CPU with ``threads`` intra-op threads."""
    session = export.onnx_session(path, threads)
    feed = {session.get_inputs()[0].name: export.example_input(input_size).numpy()}
    return time_callable(lambda: session.run(None, feed), **timing)


def time_executorch(path: str | Path, input_size: tuple[int, int], threads: int = LatencyConfig.threads,
                    **timing) -> Timing:
    """ExecuTorch with the XNNPACK delegate and a ``threads``-sized thread pool (restored afterwards).

    The pool is resized before the program is loaded and restored after it is released: XNNPACK
    keeps a pointer to the pool it was initialized with.
    """
    x = export.example_input(input_size)
    previous = export.set_executorch_threads(threads)
    loaded = {}
    try:
        loaded["method"] = export.executorch_method(path)
        return time_callable(lambda: loaded["method"].execute([x]), **timing)
    finally:
        loaded.clear()
        gc.collect()
        export.set_executorch_threads(previous)


def benchmark_network(name: str, network: nn.Module, input_size: tuple[int, int], export_dir: str | Path,
                      runtimes=RUNTIMES, threads: int = LatencyConfig.threads, exported: dict | None = None,
                      **timing) -> pd.DataFrame:
    """Export ``network`` and time it in each runtime; one row per runtime with the agreement check.

    ``exported`` maps a runtime to a file of this network at this size that already exists (a quantization
    route's fp32 artifact): it is checked and timed instead of exporting again. A file this function exports
    itself is deleted once timed (its size stays in the row): it serves the timing only, the phone kit takes
    the routes' files.
    """
    exported = exported or {}
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtimes {unknown}; expected some of {RUNTIMES}")
    export_dir = Path(export_dir)
    network = network.eval().cpu()
    rows = []
    tag = f"{name}-{export.size_tag(input_size)}"
    for runtime in runtimes:
        difference, file_bytes = 0.0, None
        if runtime == "eager":
            result = time_eager(network, input_size, threads, **timing)
        elif runtime == "onnxruntime":
            path = exported.get(runtime) or export.export_onnx(network, export_dir / f"{tag}.onnx", input_size)
            difference = export.verify_onnx(network, path, input_size)
            file_bytes = path.stat().st_size
            result = time_onnx(path, input_size, threads, **timing)
        else:
            if not export.executorch_available():
                raise RuntimeError("ExecuTorch is not installed; pip install executorch==1.5.1 or drop 'executorch'")
            path = exported.get(runtime) or export.export_executorch(network, export_dir / f"{tag}.pte", input_size)
            difference = export.verify_executorch(network, path, input_size)
            file_bytes = path.stat().st_size
            result = time_executorch(path, input_size, threads, **timing)
        if runtime != "eager" and runtime not in exported:
            path.unlink()
        rows.append({"model": name, "runtime": runtime, "input": export.size_tag(input_size),
                     "threads": threads, **asdict(result), "max_abs_diff": difference, "file_bytes": file_bytes})
    return pd.DataFrame(rows)


def detail_selection(models: pd.DataFrame, compression: float, methods) -> pd.Series:
    """Which models get every runtime: the base, the named methods at ``compression``, one run per student network.

    ``models`` is :func:`ocular_utils.report.results.model_table` (typed columns, no label parsing).
    """
    students = models["kind"] == "distill"
    first_student = students & ~models["student"].where(students).duplicated()
    named = models["method"].isin(list(methods)) & (models["requested_compression"] == float(compression))
    return (models["kind"] == "base") | named | first_student


def load_network(run_dir: str | Path) -> nn.Module:
    """The deployed embedding network of the model saved in ``run_dir``."""
    return deployed_network(load_model(run_dir))


def time_eager_runs(models: pd.DataFrame, input_size: tuple[int, int], threads: int, **timing) -> pd.DataFrame:
    """Eager batch-1 latency of every model in ``models`` (rows of the model table), one row per model."""
    rows = []
    for _, row in models.iterrows():
        result = time_eager(load_network(row["run_dir"]), input_size, threads, **timing)
        rows.append({"run": row["run"], "runtime": "eager", "input": export.size_tag(input_size),
                     "threads": threads, **asdict(result)})
    return pd.DataFrame(rows)


def benchmark_runs(models: pd.DataFrame, input_sizes, runtimes, export_dir: str | Path, threads: int,
                   exported: dict | None = None, **timing) -> pd.DataFrame:
    """Export and time each model at each input size in each runtime (outputs checked against eager).

    ``exported``: files that exist already, ``{(run folder, runtime, "HxW"): path}`` (the quantization routes'
    fp32 artifacts, :func:`ocular_utils.deployment.route_timing.fp32_artifacts`); those are timed, not
    exported again.
    """
    exported = {(resolve(run_dir).resolve(), runtime, tag): path for (run_dir, runtime, tag), path in
                (exported or {}).items()}
    frames = []
    for _, row in models.iterrows():
        network = load_network(row["run_dir"])
        for size in input_sizes:
            tag, folder = export.size_tag(size), resolve(row["run_dir"]).resolve()
            existing = {runtime: exported[key] for runtime in runtimes if (key := (folder, runtime, tag)) in exported}
            frame = benchmark_network(row["run"], network, tuple(size), export_dir, runtimes, threads,
                                      existing, **timing)
            frames.append(frame.assign(run=row["run"]))
    return pd.concat(frames, ignore_index=True)


def ratios_to(table: pd.DataFrame, reference_run: str, value: str = "median_ms") -> pd.DataFrame:
    """Each model's latency over the reference run's (``run`` names), per runtime and input; speed-up = 1 / ratio."""
    keys = ["runtime", "input", "threads"]
    if not (table["run"] == reference_run).any():
        raise ValueError(f"reference model {reference_run!r} is not in the latency table")
    ref = table[table["run"] == reference_run].set_index(keys)[value].rename("reference_ms")
    out = table.join(ref, on=keys)
    out["ratio"] = out[value] / out["reference_ms"]
    out["speedup"] = 1 / out["ratio"]
    return out


EXPORT_FOLDER = "exports"  # inside the latency unit's run folder: its timing exports and Core ML packages


def coreml_package_path(export_dir: str | Path, run: str, input_size: tuple[int, int]) -> Path:
    """Where the latency unit writes the fp16 Core ML package of the model of run folder ``run`` at ``input_size``
    (the phone kit takes it from there instead of converting again)."""
    return Path(export_dir) / f"{run}-{export.size_tag(input_size)}.mlpackage"


def export_coreml_runs(models: pd.DataFrame, input_size: tuple[int, int], export_dir: str | Path) -> pd.DataFrame:
    """Core ML packages of ``models`` (export only; a failure is reported in the row, not hidden)."""
    rows = []
    for _, row in models.iterrows():
        target = coreml_package_path(export_dir, row["run"], input_size)
        entry = {"run": row["run"], "input": export.size_tag(input_size)}
        try:
            export.export_coreml(load_network(row["run_dir"]), target, input_size)
            size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
            rows.append(entry | {"runtime": "coreml (export only)", "file_bytes": size})
        except Exception as error:  # Core ML conversion is optional: the row says why it failed
            rows.append(entry | {"runtime": f"coreml failed: {type(error).__name__}: {error}"[:160],
                                 "file_bytes": None})
    return pd.DataFrame(rows, columns=["run", "input", "runtime", "file_bytes"])


def export_files(bench: pd.DataFrame, detail: pd.DataFrame, models: pd.DataFrame, input_size: tuple[int, int],
                 coreml: bool, export_dir: str | Path) -> tuple[pd.DataFrame, str]:
    """The exported files of the runtime benchmark (``bench``) and, when ``coreml`` is asked and coremltools is
    installed, the Core ML packages of ``detail``; with a note saying what was not written and why."""
    files = bench[bench["file_bytes"].notna()][["label", "runtime", "input", "file_bytes", "max_abs_diff"]]
    note = ""
    if coreml and export.coreml_available():
        packages = export_coreml_runs(detail, input_size, export_dir)
        files = pd.concat([files, packages.merge(models[["run", "label"]], on="run").drop(columns="run")],
                          ignore_index=True)
    else:
        note = "coremltools is not installed (or latency.coreml is false): no Core ML export"
    return files.rename(columns={"label": "model", "file_bytes": "file bytes",
                                 "max_abs_diff": "max abs diff to eager"}), note


def save_latency_table(eager: pd.DataFrame, bench: pd.DataFrame, path: str | Path,
                       routes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write every model's eager timing (scope ``all models``), the runtime benchmark (``representative``) and
    the quantization routes' artifacts (``routes``, with a ``precision`` column) to one CSV."""
    frames = [eager.assign(scope="all models"), bench.assign(scope="representative")]
    if routes is not None and len(routes):
        frames.append(routes.assign(scope="routes"))
    table = pd.concat(frames, ignore_index=True)
    atomic_write_bytes(Path(path), table.to_csv(index=False).encode())
    return table
