"""Where the study's time goes: per-phase seconds of every run, the fixed overhead of a unit, throughput.

Every record keeps ``timings`` (seconds per phase: ``startup`` = kernel start and imports, ``data``,
``prune``, ``finetune`` / ``train``, ``evaluate``, ``save`` = saving, export and reload check, ...).
"""
from __future__ import annotations

import pandas as pd

from ..core.records import read_record

OVERHEAD_PHASES = ("startup", "data", "save")  # paid by every unit whatever its budget
OVERHEAD_TARGET = 0.20  # of a pruning unit's time


def phase_table(records: pd.DataFrame) -> pd.DataFrame:
    """Seconds per phase summed over the runs of each kind, with the runs' count and total."""
    timing = records.filter(like="timings.").rename(columns=lambda c: c.removeprefix("timings."))
    table = timing.assign(kind=records["kind"]).groupby("kind").sum(min_count=1)
    table.insert(0, "runs", records.groupby("kind").size())
    table["total"] = table.drop(columns="runs").sum(axis=1)
    return table.round(1).dropna(axis=1, how="all")


def overhead_summary(records: pd.DataFrame, kind: str = "prune") -> pd.DataFrame:
    """Per run of ``kind``: total seconds, fixed overhead (startup, data, save) and its fraction of the total."""
    runs = records[records["kind"] == kind]
    if runs.empty:
        return pd.DataFrame(columns=["total s", "overhead s", "overhead fraction"])
    timing = runs.filter(like="timings.").rename(columns=lambda c: c.removeprefix("timings.")).fillna(0.0)
    overhead = timing[[p for p in OVERHEAD_PHASES if p in timing]].sum(axis=1)
    total = timing.sum(axis=1)
    return pd.DataFrame({"total s": total, "overhead s": overhead, "overhead fraction": overhead / total}).describe(
        percentiles=[0.5]).loc[["count", "mean", "50%", "min", "max"]].round(3)


def throughput_table(records: pd.DataFrame) -> pd.DataFrame:
    """Training throughput (images/s of the training steps only) per family and threads, from the run histories."""
    rows = []
    for _, run in records[records["kind"].isin(["base", "prune", "distill"])].iterrows():
        record = read_record(run["run_dir"]) or {}
        history = pd.DataFrame(record.get("details", {}).get("history", []))
        if history.empty or history["seconds"].sum() <= 0:
            continue
        rows.append({"family": run["family"], "threads": record.get("params", {}).get("threads"),
                     "images/s": history["images"].sum() / history["seconds"].sum()})
    if not rows:
        return pd.DataFrame(columns=["family", "threads", "runs", "median images/s"])
    frame = pd.DataFrame(rows)
    return frame.groupby(["family", "threads"])["images/s"].agg(runs="count", median="median").rename(
        columns={"median": "median images/s"}).round(1).reset_index()
