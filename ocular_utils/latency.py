"""Feature-extraction latency of the deployed embedding network, per runtime, at batch 1.

Warm-up, then timed repeats until both ``repeats`` runs and ``min_seconds`` have passed (capped
by ``max_seconds``); min / median / p90 in milliseconds. Thread counts are fixed for the
measurement and restored afterwards; 1 thread is the mobile-like figure. Runtimes are timed one
after another, never interleaved (idle runtime threads slow the next call).
"""
from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import export
from .runtime import describe_machine, thread_count

RUNTIMES = ("eager", "onnxruntime", "executorch")


@dataclass
class Timing:
    """Latency statistics in milliseconds."""

    min_ms: float
    median_ms: float
    p90_ms: float
    mean_ms: float
    repeats: int
    warmup: int


def time_callable(fn: Callable[[], object], warmup: int = 3, repeats: int = 20, min_seconds: float = 0.0,
                  max_seconds: float = 60.0, clock: Callable[[], float] = time.perf_counter) -> Timing:
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


def _input(input_size: tuple[int, int]) -> torch.Tensor:
    return torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0))


def time_eager(network: nn.Module, input_size: tuple[int, int], threads: int = 1, **timing) -> Timing:
    """Eager PyTorch, eval mode, inference mode, ``threads`` intra-op threads."""
    network = network.eval().cpu()
    x = _input(input_size)
    with thread_count(threads), torch.inference_mode():
        return time_callable(lambda: network(x), **timing)


def time_onnx(path: str | Path, input_size: tuple[int, int], threads: int = 1, **timing) -> Timing:
    """ONNX Runtime on the CPU with ``threads`` intra-op threads."""
    session = export.onnx_session(path, threads)
    feed = {session.get_inputs()[0].name: _input(input_size).numpy()}
    return time_callable(lambda: session.run(None, feed), **timing)


def time_executorch(path: str | Path, input_size: tuple[int, int], threads: int = 1, **timing) -> Timing:
    """ExecuTorch with the XNNPACK delegate and a ``threads``-sized thread pool (restored afterwards).

    The pool is resized before the program is loaded and restored after it is released: XNNPACK
    keeps a pointer to the pool it was initialized with.
    """
    x = _input(input_size)
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
                      runtimes=RUNTIMES, threads: int = 1, **timing) -> pd.DataFrame:
    """Export ``network`` and time it in each runtime; one row per runtime with the agreement check."""
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtimes {unknown}; expected some of {RUNTIMES}")
    export_dir = Path(export_dir)
    network = network.eval().cpu()
    rows = []
    tag = f"{name}-{input_size[0]}x{input_size[1]}"
    for runtime in runtimes:
        difference, file_bytes = 0.0, None
        if runtime == "eager":
            result = time_eager(network, input_size, threads, **timing)
        elif runtime == "onnxruntime":
            path = export.export_onnx(network, export_dir / f"{tag}.onnx", input_size)
            difference = export.verify_onnx(network, path, input_size)
            file_bytes = path.stat().st_size
            result = time_onnx(path, input_size, threads, **timing)
        else:
            if not export.executorch_available():
                raise RuntimeError("ExecuTorch is not installed; pip install executorch==1.5.1 or drop 'executorch'")
            path = export.export_executorch(network, export_dir / f"{tag}.pte", input_size)
            difference = export.verify_executorch(network, path, input_size)
            file_bytes = path.stat().st_size
            result = time_executorch(path, input_size, threads, **timing)
        rows.append({"model": name, "runtime": runtime, "input": f"{input_size[0]}x{input_size[1]}",
                     "threads": threads, **asdict(result), "max_abs_diff": difference, "file_bytes": file_bytes})
    return pd.DataFrame(rows)


def machine_row() -> dict:
    """The machine facts stored next to every latency table."""
    return describe_machine()


def detail_selection(models: pd.DataFrame, compression: float = 8,
                     methods=("layer_weight", "channel_magnitude", "channel_taylor")) -> pd.Series:
    """Which models get every runtime: the base, the named pruning methods at ``compression``, one run per student."""
    from .tables import FAMILIES

    def pruned_label(method):
        return f"{method} {float(compression):g}x"

    wanted = {pruned_label(m) for m in methods if m in FAMILIES}
    is_student = models["kind"] == "distill"
    architecture = models["label"].str.split(" ").str[0]
    first_student = is_student & ~architecture.where(is_student).duplicated()
    return (models["kind"] == "base") | models["label"].isin(wanted) | first_student


def _network(run_dir: str | Path):
    from .models import deployed_network
    from .pipeline import load_model

    return deployed_network(load_model(run_dir))


def time_eager_runs(models: pd.DataFrame, input_size: tuple[int, int], threads: int = 1, **timing) -> pd.DataFrame:
    """Eager batch-1 latency of every model in ``models`` (rows of :func:`ocular_utils.tables.model_table`)."""
    rows = []
    for _, row in models.iterrows():
        result = time_eager(_network(row["run_dir"]), input_size, threads, **timing)
        rows.append({"label": row["label"], "runtime": "eager", "input": f"{input_size[0]}x{input_size[1]}",
                     "threads": threads, **asdict(result)})
    return pd.DataFrame(rows)


def benchmark_runs(models: pd.DataFrame, input_sizes, runtimes, export_dir: str | Path, threads: int = 1,
                   **timing) -> pd.DataFrame:
    """Export and time each model at each input size in each runtime (outputs checked against eager)."""
    frames = []
    for _, row in models.iterrows():
        network = _network(row["run_dir"])
        slug = row["label"].replace(" ", "_").replace("(", "").replace(")", "")
        for size in input_sizes:
            frame = benchmark_network(slug, network, tuple(size), export_dir, runtimes, threads, **timing)
            frames.append(frame.assign(label=row["label"]))
    return pd.concat(frames, ignore_index=True)


def ratios_to(table: pd.DataFrame, reference: str, value: str = "median_ms") -> pd.DataFrame:
    """Each model's latency divided by ``reference``'s, per runtime and input size (speed-up = 1 / ratio)."""
    keys = ["runtime", "input", "threads"]
    if not (table["label"] == reference).any():
        raise ValueError(f"reference model {reference!r} is not in the latency table")
    ref = table[table["label"] == reference].set_index(keys)[value].rename("reference_ms")
    out = table.join(ref, on=keys)
    out["ratio"] = out[value] / out["reference_ms"]
    out["speedup"] = 1 / out["ratio"]
    return out
