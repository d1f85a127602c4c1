"""Do the "who pays" tests hold their level? The paired change of a group gap and the Holm family of per-group
changes on simulated data sets (:func:`ocular_utils.verification.calibration.gap_rejection_rate`).

Subjects alternate between groups A and B; both models raise the impostor scores within group B by
``--group-effect`` (a gap both share). Under the null (rows with extra effect 0) the share of data sets in which
a test rejects at alpha = 0.05 is its false-positive rate (target <= 0.06); the last row raises model a's
group-B impostor scores by ``--extra-effect`` more (the power of "a widens the gap").

    python benchmarks/gap_calibration.py --datasets 300 --replicates 200
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from ocular_utils.core.environment import describe_machine
from ocular_utils.verification.calibration import Design, gap_rejection_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=300)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--group-effect", type=float, default=0.4)
    parser.add_argument("--extra-effect", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for k, (group, extra) in enumerate(((args.group_effect, 0.0), (0.0, 0.0), (args.group_effect, args.extra_effect))):
        result = gap_rejection_rate(Design(subjects=args.subjects, effect_side="both"), args.datasets, args.replicates,
                                    0.05, args.seed + k, group, extra)
        rows.append({"group effect (both models)": group, "extra effect (model a)": extra,
                     "gap change rejects": result["gap_rate"], "Holm family rejects": result["family_rate"]})
    print(f"{args.datasets} simulated data sets per row, {args.subjects} subjects x 2 eyes, {args.replicates} draws, "
          f"alpha 0.05; machine: {describe_machine().get('cpu', 'unknown')}")
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
