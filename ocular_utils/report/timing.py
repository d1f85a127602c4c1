"""Where the study's time goes: per-phase seconds of every run, the fixed overhead of a unit, throughput.

Every record keeps ``timings`` (seconds per phase: ``startup`` = kernel start and imports, ``data``,
``prune``, ``finetune`` / ``train``, ``evaluate``, ``save`` = saving, export and reload check, ...).
"""
from __future__ import annotations

import pandas as pd

from ..core.records import read_record

OVERHEAD_PHASES = ("startup", "data", "save")  # paid by every unit whatever its budget
OVERHEAD_TARGET = 0.05  # of a median pruning unit's time (issue 20 item 3)


def phase_table(records: pd.DataFrame) -> pd.DataFrame:
    """Seconds per phase summed over the runs of each kind, with the runs' count and total."""
    timing = records.filter(like="timings.").rename(columns=lambda c: c.removeprefix("timings."))
    table = timing.assign(kind=records["kind"]).groupby("kind").sum(min_count=1)
    table.insert(0, "runs", records.groupby("kind").size())
    table["total"] = table.drop(columns="runs").sum(axis=1)
    return table.round(1).dropna(axis=1, how="all")


def overhead_summary(records: pd.DataFrame, kind: str = "prune") -> pd.DataFrame:
    """Median, mean, min and max over the runs of ``kind`` (each column on its own) of the unit's seconds, of each
    fixed phase (kernel start and imports, data, save), of their sum and of its share of the unit (%)."""
    columns = ["unit s", *(f"{phase} s" for phase in OVERHEAD_PHASES), "fixed s", "fixed share (%)"]
    runs = records[records["kind"] == kind]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    timing = runs.filter(like="timings.").rename(columns=lambda c: c.removeprefix("timings.")).fillna(0.0)
    fixed = timing.reindex(columns=list(OVERHEAD_PHASES), fill_value=0.0)
    per_run = pd.concat([timing.sum(axis=1).rename("unit s"), fixed.add_suffix(" s"),
                         fixed.sum(axis=1).rename("fixed s")], axis=1)
    per_run["fixed share (%)"] = 100 * per_run["fixed s"] / per_run["unit s"]
    table = pd.DataFrame({"median": per_run.median(), "mean": per_run.mean(), "min": per_run.min(),
                          "max": per_run.max()}).T[columns]
    return table.rename_axis(f"over {len(per_run)} {kind} runs")


def overhead_verdict(overhead: pd.DataFrame) -> str:
    """The timing chapter's line: the median fixed share of a unit against :data:`OVERHEAD_TARGET`."""
    if overhead.empty:
        return "No pruning unit has recorded its phases."
    share = overhead.loc["median", "fixed share (%)"]
    met = "within" if share <= 100 * OVERHEAD_TARGET else "above"
    return (f"Median fixed overhead: **{share:.0f}%** of a pruning unit, {met} the target of at most "
            f"{100 * OVERHEAD_TARGET:.0f}%.")


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
