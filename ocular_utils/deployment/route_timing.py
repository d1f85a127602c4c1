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
        parent = resolve(record["params"]["parent_dir"]).resolve()
        for artifact in record["details"]["artifacts"]:
            if artifact["precision"] == "fp32":
                files[(parent, artifact["runtime"], artifact["input"])] = resolve(artifact["file"])
    return files


def time_artifacts(run_dirs, threads: int, **timing) -> pd.DataFrame:
    """Batch-1 latency of every artifact of the quantization runs in ``run_dirs``, and of each parent in eager.

    One row per (run, runtime, precision, input); ``run`` is the quantization run's folder name.
    """
    rows = []
    for run_dir in run_dirs:
        record = route_record(run_dir)
        run = Path(run_dir).name
        artifacts = pd.DataFrame(record["details"]["artifacts"])
        network = deployed_network(load_model(resolve(record["params"]["parent_dir"])))
        for tag in artifacts["input"].unique():
            result = latency.time_eager(network, export.size_from_tag(tag), threads, **timing)
            rows.append({"run": run, "runtime": "eager", "precision": "fp32", "input": tag,
                         "threads": threads, "file_bytes": None, **asdict(result)})
        for _, artifact in artifacts.iterrows():
            timer = latency.time_executorch if artifact["runtime"] == "executorch" else latency.time_onnx
            result = timer(resolve(artifact["file"]), export.size_from_tag(artifact["input"]), threads, **timing)
            rows.append({"run": run, "runtime": artifact["runtime"], "precision": artifact["precision"],
                         "input": artifact["input"], "threads": threads, "file_bytes": artifact["bytes"],
                         **asdict(result)})
    return pd.DataFrame(rows)


def time_routes(run_dirs, threads: int, **timing) -> pd.DataFrame:
    """:func:`time_artifacts` of the quantization runs with each run's family, or an empty frame without runs."""
    if not run_dirs:
        return pd.DataFrame(columns=["run", "runtime", "precision", "input", "median_ms", "family"])
    families = pd.concat([load_records(resolve(run_dir)) for run_dir in run_dirs])[["run", "family"]]
    return time_artifacts(run_dirs, threads, **timing).merge(families, on="run")
