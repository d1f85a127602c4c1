"""How long a paired comparison takes on a study's real score files: pair-count reading vs weighting every trial.

Every paired test of the study (the comparison and phone chapters' looks at B and 2B, the along-the-way
convergence checks, the int8 routes against their parents) reads a metric of several score sets under the
same subject draws (:func:`ocular_utils.verification.paired.resampled_values`). This script takes
``--models`` score files of a finished study (the test scores of its pruning runs, on one trial list),
reads their EER under ``--replicates`` draws both ways (``by_pairs=True``, the default, and
``by_pairs=False``, which weights every trial under every draw), checks that the two give the same values,
and prints the seconds of each.

    python benchmarks/paired_speed.py --results results/default --models 4 --replicates 1000
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ocular_utils.core.environment import describe_machine
from ocular_utils.verification.paired import resampled_values
from ocular_utils.verification.resampling import resampler_for
from ocular_utils.verification.scoring import load_trial_scores


def score_files(results: Path, models: int) -> dict:
    """``models`` score files of the study's pruning runs that share the first one's trial list."""
    files = {}
    for path in sorted((results / "runs" / "prune").glob("*/scores.npz")):
        scores = load_trial_scores(path.parent)
        if files and scores["trial_list"] != next(iter(files.values()))["trial_list"]:
            continue
        files[path.parent.name] = scores
        if len(files) == models:
            return files
    raise SystemExit(f"paired_speed: {results} holds {len(files)} pruning runs with scores on one trial list, "
                     f"fewer than --models {models}; finish the study first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results/default"))
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--metric", default="eer")
    args = parser.parse_args()
    files = score_files(args.results, args.models)
    first = next(iter(files.values()))
    resampler = resampler_for(first, args.replicates, seed=0)
    print(f"{describe_machine()['cpu']}; {len(files)} score files of {len(first['scores']):,} trials, "
          f"{len(resampler.subjects)} subjects, {args.replicates} draws, metric {args.metric}")
    seconds, values = {}, {}
    for by_pairs in (True, False):
        started = time.perf_counter()
        values[by_pairs] = resampled_values([f["scores"] for f in files.values()], resampler, args.metric,
                                            by_pairs=by_pairs)
        seconds[by_pairs] = time.perf_counter() - started
    pairs, trials = values[True][1], values[False][1]
    print(f"pair counts: {seconds[True]:.1f} s; every trial weighted: {seconds[False]:.1f} s "
          f"({seconds[False] / seconds[True]:.0f}x); largest difference of the {pairs.size:,} values: "
          f"{np.abs(pairs - trials).max():.1e}; identical: {bool(np.array_equal(pairs, trials))}")


if __name__ == "__main__":
    main()
