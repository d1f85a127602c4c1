"""How long the "who pays" analysis takes at the default study's scale, exact per-draw reading vs weighting every trial.

Builds score files the size of the default profile's test trials (``--subjects`` test subjects x 2 eyes x 18
images: 3 phones x 3 lights x 2 visits, genuine trials within an eye, impostor trials between subjects of the
same eye, capped at ``--impostors``) for ``--models`` models, with capture conditions and two synthetic groups,
and times :func:`ocular_utils.verification.subsets.subset_draws` over every condition and group subset with
``--replicates`` draws. For comparison it times the per-trial weighting (:class:`ErrorCurve` under each draw's
trial weights) for one model on one subset and scales it to the same work.

    python benchmarks/who_pays_speed.py --models 20 --replicates 1000
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from ocular_utils.core.environment import describe_machine
from ocular_utils.verification.conditions import condition_codes, condition_masks, group_masks
from ocular_utils.verification.metrics import ErrorCurve
from ocular_utils.verification.resampling import resampler_for
from ocular_utils.verification.subsets import subset_draws


def score_files(subjects: int, impostors: int, models: int, seed: int) -> tuple[dict, dict]:
    """``models`` score files of one default-sized trial list, and the masks of its conditions and groups."""
    rng = np.random.default_rng(seed)
    images = pd.DataFrame([{"subject": f"s{s}", "eye": eye, "phone": phone, "light": light, "session": visit}
                           for s in range(subjects) for eye in "lr" for phone in ("iphone", "samsung", "oppo")
                           for light in ("office", "dim", "day") for visit in (1, 2)])
    probe, reference = np.triu_indices(len(images), 1)
    same_eye = images["eye"].to_numpy()[probe] == images["eye"].to_numpy()[reference]
    probe, reference = probe[same_eye], reference[same_eye]
    genuine = images["subject"].to_numpy()[probe] == images["subject"].to_numpy()[reference]
    keep = genuine | (rng.random(len(probe)) < impostors / max(1, (~genuine).sum()))
    trials = pd.DataFrame({"probe": probe[keep], "reference": reference[keep], "genuine": genuine[keep]})
    base = {"genuine": trials["genuine"].to_numpy(), "trial_list": "benchmark",
            "probe_subject": images["subject"].to_numpy()[trials["probe"]],
            "reference_subject": images["subject"].to_numpy()[trials["reference"]],
            **condition_codes(images, trials)}
    masks = condition_masks(base) | group_masks(base, pd.Series({f"s{s}": "AB"[s % 2] for s in range(subjects)}))
    files = {f"model {m}": base | {"scores": np.where(base["genuine"], 1.0, 0.0) + rng.normal(0, 0.7, len(trials))}
             for m in range(models)}
    return files, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--impostors", type=int, default=500_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files, masks = score_files(args.subjects, args.impostors, args.models, args.seed)
    first = next(iter(files.values()))
    trials = len(first["scores"])
    subset_trials = sum(int(m.sum()) for m in masks.values())
    print(f"{trials:,} trials ({int(first['genuine'].sum()):,} genuine), {len(masks)} subsets holding "
          f"{subset_trials:,} trial places, {args.models} models, {args.replicates} draws; machine: "
          f"{describe_machine().get('cpu', 'unknown')}")
    started = time.perf_counter()
    subset_draws(files, masks, args.replicates, args.seed)
    exact = time.perf_counter() - started
    # the per-trial weighting: one model, the largest subset, a few draws, scaled to all models, subsets, draws
    name = max(masks, key=lambda k: masks[k].sum())
    mask, genuine = masks[name], first["genuine"]
    curve = ErrorCurve(first["scores"][mask & genuine], first["scores"][mask & ~genuine])
    resampler = resampler_for(first, 20, args.seed)
    started = time.perf_counter()
    for weights in resampler:
        curve.eer_and_tar(0.01, weights[mask & genuine], weights[mask & ~genuine])
    per_trial = (time.perf_counter() - started) / resampler.replicates / mask.sum()
    scaled = per_trial * subset_trials * args.models * args.replicates
    print(f"pair curves (exact, every subset and model): {exact:.1f} s")
    print(f"weighting every trial (ErrorCurve), scaled from {resampler.replicates} draws of '{name}': {scaled:.0f} s")


if __name__ == "__main__":
    main()
