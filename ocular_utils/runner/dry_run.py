"""What ``ocular-study run --dry-run`` and ``status`` print: every unit with its state and parameters, what later
rounds add, the whole plan's price, the results folder's size, then the plan's problems."""
from __future__ import annotations

import json
from pathlib import Path

from . import book, cleanup, preflight, pricing
from .plan import Planner


def priced(profile, root: Path, args, train_images: int | None = None) -> str:
    """The dry run's price of the whole plan (every round): training images per group and hours."""
    records = pricing.finished_records(root / args.results / profile.name)
    train_images = args.train_images or train_images or pricing.recorded_train_images(records)
    base_images = None if train_images is None else profile.base.train.epochs * train_images
    full = Planner(profile, root, args.results, args.threads, assume_done=True, base_images=base_images).build()
    table = pricing.priced_plan(full, train_images, args.images_per_second, pricing.recorded_throughput(records))
    return pricing.priced_text(table, train_images, args.images_per_second)


def shown_params(params: dict) -> str:
    """A unit's parameters on one line for ``--dry-run``: scalars in full, sections and lists by size."""
    def shown(value):
        if isinstance(value, dict):
            return "{" + f"{len(value)} settings" + "}"
        if isinstance(value, list):
            return f"[{len(value)} items]" if len(value) > 3 else json.dumps(value, default=str)
        return json.dumps(value, default=str)

    return " ".join(f"{key}={shown(value)}" for key, value in sorted(params.items()))


def show_plan(args, profile, units: dict, root: Path, pending: list[str]) -> int:
    """Print each unit with its state and parameters, what later rounds add, the plan's price and the folder sizes;
    then the plan's problems (:func:`.preflight.checked_plan`, without generating data), so that a plan is shown and
    priced before its data is there."""
    checked = preflight.checked_plan(profile, units, generate=False, raise_problems=False)
    for unit in units.values():
        state = "done" if unit.complete(root) else "to run"
        print(f"  {state:7s} {unit.name:40s} {unit.run_dir}\n          {shown_params(unit.params)}")
    for note in pending:
        print(f"  later   {note}")
    print(priced(profile, root, args, checked.train_images))
    results, html = root / args.results / profile.name, book.html_folder(root, profile.name)
    stale = cleanup.stale_runs(units, root, results)
    stale_bytes = cleanup.human(cleanup.folder_bytes(*stale))
    shown = results.relative_to(root) if results.is_relative_to(root) else results
    print(f"{shown}: {cleanup.human(cleanup.folder_bytes(results))}, of which {len(stale)} "
          f"run folders no unit of this plan owns ({stale_bytes}; `ocular-study clean` removes them); "
          f"book {cleanup.human(cleanup.folder_bytes(html))}")
    if checked.problems:
        raise preflight.PlanProblems(checked.problems)
    return 0
