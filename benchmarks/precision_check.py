"""What bf16 training costs in accuracy: the base and the paper's method at the headline ratio, trained both ways.

Takes a finished study (fp32 records of its ``base`` and ``prune/<paper method>-<headline>x``
units), runs the same two notebooks again with ``precision="bf16"`` (the pruned model starts from
the bf16 base; everything else as recorded) into ``<results>/<profile>-bf16``, and prints the
paired EER difference (bf16 - fp32) of each on the same test trials, with its 95% subject-bootstrap
interval (both subjects of a trial resampled) and the training seconds of each. The table is
written to ``--csv``, and with ``--html`` as the table the book's reproducing page shows.

    python benchmarks/precision_check.py --profile default --csv data/benchmarks/precision_check.csv \
        --html data/benchmarks/precision_check.html
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
from pathlib import Path

import pandas as pd

from ocular_utils.core.atomic import atomic_write_bytes
from ocular_utils.core.environment import describe_machine, source_commit
from ocular_utils.core.records import finished_record
from ocular_utils.core.study import PAPER_METHOD
from ocular_utils.report.display import show, write_html
from ocular_utils.runner import scheduler
from ocular_utils.runner.cli import plan
from ocular_utils.verification.scoring import compare_runs


def bf16_copy(unit, root: Path, results: str, profile: str, base_dir: str | None = None):
    """The unit again at bf16, in its own folder under ``<results>/<profile>-bf16`` (``base_dir``: its new parent)."""
    run_dir = Path(results) / f"{profile}-bf16" / "runs" / unit.kind / f"{unit.run_dir.name}-bf16"
    params = unit.params | {"precision": "bf16", "run_dir": str(run_dir)} | ({"base_dir": base_dir} if base_dir else {})
    return dataclasses.replace(unit, params=params, run_dir=run_dir, key=f"{unit.key}-bf16")


def page_table(table: pd.DataFrame, heading: str):
    """The page's table: each model's EER at fp32 and bf16, the paired change with its interval and p (the
    training seconds stay in the CSV: the two runs may not have had the machine alike; the throughput benchmark
    measures speed)."""
    change = [f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" for d, lo, hi in
              zip(table["bf16 - fp32 (points)"], table["95% interval low"], table["95% interval high"])]
    frame = table[["model", "EER fp32 (%)", "EER bf16 (%)"]].assign(**{"bf16 - fp32, points [95% interval]": change},
                                                                    p=table["p"])
    return show(frame, title="What bf16 training costs in accuracy (paired on the same test trials)",
                p_values=("p",), digits={"EER fp32 (%)": 2, "EER bf16 (%)": 2}, note=heading)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--results", default="results")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--csv", default=None)
    parser.add_argument("--html", default=None, help="the book's table (a great_tables HTML fragment)")
    args = parser.parse_args()
    profile, units, root, _ = plan(args.profile, args.results)
    headline = f"prune/{PAPER_METHOD}-{profile.budget.headline_ratio:g}x"
    missing = [name for name in ("base", headline) if name not in units or not units[name].complete(root)]
    if missing:
        raise SystemExit(f"precision_check: finish the study first (`ocular-study run --profile {args.profile}`): "
                         f"{missing} not complete")
    base = bf16_copy(units["base"], root, args.results, profile.name)
    pruned = bf16_copy(units[headline], root, args.results, profile.name, base_dir=str(base.run_dir))
    rows = []
    for fp32, bf16 in ((units["base"], base), (units[headline], pruned)):
        if not bf16.complete(root):
            print(f"training {bf16.name} at bf16 -> {bf16.run_dir}", flush=True)
            scheduler.execute_unit(bf16, root)
        records = {name: finished_record(root / unit.run_dir) for name, unit in (("fp32", fp32), ("bf16", bf16))}
        change = compare_runs(root / bf16.run_dir, root / fp32.run_dir, "eer", args.replicates)
        rows.append({"model": fp32.name, "precision of the bf16 run": records["bf16"].get("precision"),
                     "EER fp32 (%)": 100 * records["fp32"]["metrics"]["eer"],
                     "EER bf16 (%)": 100 * records["bf16"]["metrics"]["eer"],
                     "bf16 - fp32 (points)": 100 * change.difference,
                     "95% interval low": 100 * change.ci_low, "95% interval high": 100 * change.ci_high,
                     "p": change.p_value,
                     "train s fp32": sum(records["fp32"]["timings"].get(k, 0) for k in ("train", "finetune")),
                     "train s bf16": sum(records["bf16"]["timings"].get(k, 0) for k in ("train", "finetune"))})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        atomic_write_bytes(args.csv, table.to_csv(index=False, float_format="%.4f").encode())
    if args.html:
        machine = describe_machine()
        heading = (f"Measured by benchmarks/precision_check.py at commit {source_commit()} on "
                   f"{datetime.date.today().isoformat()}, profile "
                   f"{profile.name} ({'SYNTHETIC data' if profile.synthetic else 'real data'}), on "
                   f"{machine['cpu']} ({machine['cpu_count']} cores), torch {machine['torch']}; "
                   f"{args.replicates} subject-bootstrap replicates, both subjects of a trial resampled.")
        write_html(page_table(table, heading), args.html)


if __name__ == "__main__":
    main()
