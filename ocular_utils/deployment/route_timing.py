"""Batch-1 latency of the artifacts the quantization runs wrote (and of each parent in eager PyTorch), read from
their records; the latency unit calls it, alone on the CPU. The timing harness itself is :mod:`.latency`."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..core.paths import resolve
from ..core.records import load_records, read_record
from ..models.files import load_model
from ..models.networks import deployed_network
from . import export, latency


def route_record(run_dir) -> dict:
    """The record of a finished quantization run; an error naming the folder when it has none."""
    record = read_record(resolve(run_dir))
    if record is None:
        raise FileNotFoundError(f"quantization run {run_dir} has no complete record")
    return record


def fp32_artifacts(run_dirs) -> dict[tuple[Path, str, str], Path]:
    """The fp32 files the quantization runs in ``run_dirs`` wrote of their parents: ``{(parent folder, runtime,
    "HxW"): file}``, for :func:`ocular_utils.deployment.latency.benchmark_runs` to time instead of exporting again."""
    files = {}
    for run_dir in run_dirs:
        record = route_record(run_dir)
        parent = resolve(record["params"]["parent_dir"])  # benchmark_runs normalizes the folders it compares
        for artifact in record["details"]["artifacts"]:
            if artifact["precision"] == "fp32":
                files[(parent, artifact["runtime"], artifact["input"])] = resolve(artifact["file"])
    return files


TIMING_FIELDS = tuple(latency.Timing.__dataclass_fields__)


def _timed_before(timed: pd.DataFrame | None, run: str, runtime: str, tag: str, threads: int) -> dict | None:
    """The timing fields of ``run`` in ``runtime`` at ``tag`` and ``threads`` where ``timed`` (the runtime
    benchmark's rows) has them: a route parent's fp32 program is the same file there, timed once."""
    if timed is None or not len(timed):
        return None
    hit = timed[(timed["run"] == run) & (timed["runtime"] == runtime) & (timed["input"] == tag)
                & (timed["threads"] == threads)]
    return hit.iloc[0][list(TIMING_FIELDS)].to_dict() if len(hit) else None


def time_artifacts(run_dirs, threads: int, timed: pd.DataFrame | None = None, **timing) -> pd.DataFrame:
    """Batch-1 latency of every artifact of the quantization runs in ``run_dirs``, and of each parent in eager.

    One row per (run, runtime, precision, input); ``run`` is the quantization run's folder name. A parent's
    fp32 row (eager or an exported file) that ``timed`` already holds at the same threads
    (:func:`ocular_utils.deployment.latency.benchmark_runs`, whose ``run`` is the parent's folder name) is
    taken from there, not timed again; rows at other threads are not used.
    """
    rows = []
    for run_dir in run_dirs:
        record = route_record(run_dir)
        run = Path(run_dir).name
        parent_dir = resolve(record["params"]["parent_dir"])
        artifacts = pd.DataFrame(record["details"]["artifacts"])
        network = None
        for tag in artifacts["input"].unique():
            result = _timed_before(timed, parent_dir.name, "eager", tag, threads)
            if result is None:
                if network is None:
                    network = deployed_network(load_model(parent_dir))
                result = asdict(latency.time_eager(network, export.size_from_tag(tag), threads, **timing))
            rows.append({"run": run, "runtime": "eager", "precision": "fp32", "input": tag,
                         "threads": threads, "file_bytes": None, **result})
        for _, artifact in artifacts.iterrows():
            result = (_timed_before(timed, parent_dir.name, artifact["runtime"], artifact["input"], threads)
                      if artifact["precision"] == "fp32" else None)
            if result is None:
                timer = latency.time_executorch if artifact["runtime"] == "executorch" else latency.time_onnx
                result = asdict(timer(resolve(artifact["file"]), export.size_from_tag(artifact["input"]), threads,
                                      **timing))
            rows.append({"run": run, "runtime": artifact["runtime"], "precision": artifact["precision"],
                         "input": artifact["input"], "threads": threads, "file_bytes": artifact["bytes"], **result})
    return pd.DataFrame(rows)


def time_routes(run_dirs, threads: int, timed: pd.DataFrame | None = None, **timing) -> pd.DataFrame:
    """:func:`time_artifacts` of the quantization runs with each run's family, or an empty frame without runs."""
    if not run_dirs:
        return pd.DataFrame(columns=["run", "runtime", "precision", "input", "median_ms", "family"])
    families = pd.concat([load_records(resolve(run_dir)) for run_dir in run_dirs])[["run", "family"]]
    return time_artifacts(run_dirs, threads, timed, **timing).merge(families, on="run")
