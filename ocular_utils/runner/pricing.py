"""What a plan costs before it runs: training images per group of units, and the hours they take.

``ocular-study run --dry-run`` plans every round at once (:class:`~ocular_utils.runner.plan.Planner`
with ``assume_done``: the sweep's first rate, each choice's first candidate; lengths do not depend
on which model is chosen) and counts the images each unit trains on: the base's epochs times the
training images; a compressed model's or a student's trunk plus every decay branch
(:meth:`~ocular_utils.training.budget.RunBudget.trained_images`). The hours come from a throughput
the user gives (``--images-per-second``) or from the finished training runs of the results folder
(the images of their trunk chunks and decay branches over those chunks' and branches' seconds).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..core.records import RECORD, finished_record
from ..training.budget import RunBudget
from .plan import Unit

TRAINING_KINDS = ("base", "prune", "distill")


def unit_images(unit: Unit, train_images: int | None) -> int | None:
    """Images one unit trains on (None for the base while the training set's size is unknown; 0 for the rest)."""
    params = unit.params
    if unit.kind == "base":
        return None if train_images is None else int(params["base"]["train"]["epochs"]) * train_images
    if unit.kind == "prune":
        batch = params["pruning"]["finetune"]["batch_size"]
    elif unit.kind == "distill":
        batch = params["distillation"]["train"]["batch_size"]
    else:
        return 0
    return RunBudget.from_dict(params["budget"], "budget").trained_images(batch)


def group(unit: Unit) -> str:
    """The line of the priced plan a unit counts in: its kind, and its role where it has one."""
    role = unit.params.get("role")
    return unit.kind if role in (None, "grid") else f"{unit.kind} ({role})"


def finished_records(results: Path) -> list[dict]:
    """Every complete record under the results folder, read once for the pricing functions below."""
    return [r for r in (finished_record(path.parent) for path in sorted(Path(results).rglob(RECORD))) if r is not None]


def recorded_train_images(records: list[dict]) -> int | None:
    """The training set's size, from any finished run that recorded its split."""
    for record in records:
        for part in record.get("details", {}).get("split", []) or []:
            if part.get("part") == "train":
                return int(part["images"])
    return None


def recorded_throughput(records: list[dict]) -> dict[str, float]:
    """Training images per second by kind (base, prune, distill) over finished runs' records."""
    images, seconds = {}, {}
    for record in records:
        if record["kind"] not in TRAINING_KINDS:
            continue
        timed = ("images", "seconds", "branch_images", "branch_seconds")
        rows = [row for row in record.get("details", {}).get("history") or []
                if all(math.isfinite(row.get(k) or 0) for k in timed)]
        trained = sum((row.get("images") or 0) + (row.get("branch_images") or 0) for row in rows)
        spent = sum((row.get("seconds") or 0) + (row.get("branch_seconds") or 0) for row in rows)
        if trained and spent:
            images[record["kind"]] = images.get(record["kind"], 0) + trained
            seconds[record["kind"]] = seconds.get(record["kind"], 0) + spent
    return {kind: images[kind] / seconds[kind] for kind in images}


def priced_plan(units: dict[str, Unit], train_images: int | None, images_per_second: float | None = None,
                recorded: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per group of training units: units, training images, and hours at the throughput.

    ``images_per_second`` prices every kind alike (e.g. a GPU's ResNet50 rate: students and pruned
    models are then priced as ResNet50, an upper bound); otherwise each kind takes its ``recorded``
    rate, where there is one.
    """
    rows = {}
    for unit in units.values():
        if unit.kind not in TRAINING_KINDS:
            continue
        row = rows.setdefault(group(unit), {"units": 0, "training images": 0, "kind": unit.kind, "unknown": 0})
        row["units"] += 1
        images = unit_images(unit, train_images)
        if images is None:
            row["unknown"] += 1
        else:
            row["training images"] += images
    table = pd.DataFrame.from_dict(rows, orient="index")
    if table.empty:
        return table
    rate = table["kind"].map(lambda kind: images_per_second or (recorded or {}).get(kind, float("nan")))
    table["images/s"] = rate
    table["hours"] = (table["training images"] / rate / 3600).where(table["unknown"] == 0)
    table.loc[table["unknown"] > 0, "training images"] = float("nan")
    known = table[table["unknown"] == 0]
    total = pd.DataFrame({"units": [table["units"].sum()], "training images": [known["training images"].sum()],
                          "kind": [""], "unknown": [table["unknown"].sum()], "images/s": [float("nan")],
                          "hours": [known["hours"].sum(min_count=1)]}, index=["total"])
    return pd.concat([table, total]).drop(columns="kind")


def priced_text(table: pd.DataFrame, train_images: int | None, images_per_second: float | None) -> str:
    """The priced plan as the dry run prints it, with what its figures rest on."""
    if table.empty:
        return "no training units in the plan"
    unknown = int(table.loc["total", "unknown"])
    shown = table.assign(**{"training images": table["training images"].map(lambda v: "?" if pd.isna(v)
                                                                            else f"{v:,.0f}"),
                            "images/s": table["images/s"].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}"),
                            "hours": table["hours"].map(lambda v: "?" if pd.isna(v) else f"{v:,.1f}")})
    shown = shown.drop(columns="unknown")
    if unknown:  # the total counts the known rows only
        shown.loc["total", ["training images", "hours"]] = [f">= {shown.loc['total', c]}"
                                                            for c in ("training images", "hours")]
    lines = ["planned training, every round (lengths as planned; the sweep's and the choices' outcomes do not "
             "change them):", shown.to_string()]
    if train_images is None:
        lines.append("the base's images are unknown until the data is indexed (give --train-images N, or run the "
                     "data unit first); the students at matched total training wait for them and are not listed")
    source = (f"{images_per_second:,.0f} images/s for every kind (--images-per-second)" if images_per_second
              else "throughput recorded by this results folder's finished runs" if table["images/s"].notna().any()
              else "no throughput known: give --images-per-second")
    lines.append(f"hours at {source}")
    return "\n".join(lines)
