"""Tidy tables built from result records, as the book's chapters show them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import pruning, structured
from .results import load_records

FAMILIES = {**{m: "unstructured pruning" for m in pruning.METHODS},
            **{m: "channel pruning" for m in structured.STRUCTURED_METHODS}}


def gather(runs: list[str | Path] | str | Path | None, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Records of the given run folders (or every record under ``results_dir``), one table."""
    if runs:
        frames = [load_records(run) for run in ([runs] if isinstance(runs, (str, Path)) else runs)]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else load_records("/nonexistent")
    if results_dir is None:
        raise ValueError("give the run folders (runs=[...]) or a results_dir to read records from")
    return load_records(results_dir)


HEADLINE = ("eer", "eer ci_low", "eer ci_high", "tar@far=0.01", "tar@far=0.001")


def _headline(runs: pd.DataFrame) -> dict:
    """The headline verification metrics of record rows, as table columns."""
    return {name: runs[f"metrics.{name}"] for name in HEADLINE}


def base_row(records: pd.DataFrame) -> pd.Series:
    """The base model's record (exactly one is expected)."""
    base = records[records["kind"] == "base"]
    if len(base) != 1:
        raise ValueError(f"expected one base-model record, found {len(base)}")
    return base.iloc[0]


def compression_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per pruning run: method, family, requested/achieved compression, EER before/after fine-tuning."""
    runs = records[records["kind"] == "prune"].copy()
    if runs.empty:
        return pd.DataFrame()
    out = pd.DataFrame({
        "method": runs["params.method"],
        "family": runs["params.method"].map(FAMILIES),
        "requested": runs["params.compression"].astype(float),
        "compression": runs["model.compression"].astype(float),
        "params": runs["model.params"],
        "nonzero_params": runs["model.nonzero_params"],
        "macs": runs["model.macs"],
        "nonzero_macs": runs["model.nonzero_macs"],
        "eer_before_finetune": runs["metrics.before.eer"],
        **_headline(runs),
        "deployed_dense_bytes": runs["model.deployed_dense_bytes"],
        "deployed_stored_bytes": runs.get("model.deployed_sparse_bytes", pd.Series(np.nan, index=runs.index))
        .fillna(runs["model.deployed_dense_bytes"]),
        "finetune_seconds": runs["timings.finetune_seconds"],
        "run_dir": runs["run_dir"],
    })
    return out.sort_values(["family", "method", "requested"]).reset_index(drop=True)


def distillation_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per student run: student, loss, parameters, EER with intervals, compression vs the teacher."""
    runs = records[records["kind"] == "distill"].copy()
    if runs.empty:
        return pd.DataFrame()
    base = base_row(records)
    out = pd.DataFrame({
        "student": runs["params.student"],
        "loss": runs["params.loss"],
        "teacher": runs["params.loss"].map(lambda loss: "no teacher (control)" if loss == "none" else "distilled"),
        "params": runs["model.params"],
        "compression": base["model.params"] / runs["model.params"].astype(float),
        "macs": runs["model.macs"],
        **_headline(runs),
        "deployed_dense_bytes": runs["model.deployed_dense_bytes"],
        "train_seconds": runs["timings.train_seconds"],
        "run_dir": runs["run_dir"],
    })
    return out.sort_values(["student", "loss"]).reset_index(drop=True)


def model_table(records: pd.DataFrame) -> pd.DataFrame:
    """Every model of the study in one table: label, family, compression, EER (+ interval), cost, size."""
    rows = []
    base = base_row(records)
    for _, r in records[records["kind"].isin(["base", "prune", "distill"])].iterrows():
        if r["kind"] == "base":
            family, label = "base", f"{r['params.backbone']} (base)"
        elif r["kind"] == "prune":
            family = FAMILIES[r["params.method"]]
            label = f"{r['params.method']} {float(r['params.compression']):g}x"
        else:
            family = "KD student" if r["params.loss"] != "none" else "student, no teacher"
            label = f"{r['params.student']} ({r['params.loss']})"
        stored = r.get("model.deployed_sparse_bytes")
        rows.append({
            "label": label, "family": family, "kind": r["kind"],
            "compression": float(base["model.params"]) / float(r["model.nonzero_params"]),
            "params": r["model.params"], "nonzero_params": r["model.nonzero_params"],
            "macs": r["model.macs"], "nonzero_macs": r["model.nonzero_macs"],
            "eer": r["metrics.eer"], "eer ci_low": r["metrics.eer ci_low"], "eer ci_high": r["metrics.eer ci_high"],
            "tar@far=0.01": r["metrics.tar@far=0.01"],
            "stored_bytes": stored if isinstance(stored, (int, float)) and not np.isnan(stored)
            else r["model.deployed_dense_bytes"],
            "run_dir": r["run_dir"],
        })
    return pd.DataFrame(rows)


def percent(frame: pd.DataFrame, columns=None, digits: int = 2) -> pd.DataFrame:
    """Copy of ``frame`` with rate columns (EER, TAR, intervals) shown in percent."""
    frame = frame.copy()
    columns = columns or [c for c in frame.columns if c.startswith(("eer", "tar@")) and c != "eer_threshold"]
    for column in columns:
        frame[column] = (100 * frame[column].astype(float)).round(digits)
    return frame


def with_interval(frame: pd.DataFrame, column: str = "eer", digits: int = 2) -> pd.Series:
    """``value [low, high]`` strings in percent for a metric with bootstrap bounds."""
    return frame.apply(lambda r: f"{100 * r[column]:.{digits}f} [{100 * r[f'{column} ci_low']:.{digits}f}, "
                                 f"{100 * r[f'{column} ci_high']:.{digits}f}]", axis=1)
