"""Does the paired test hold its level? Simulated verification data with identity effects.

Each simulated data set has ``subjects`` people with two eyes each (an identity per eye), a few
enrolment and probe images per identity, genuine trials within an identity and impostor trials
between identities of the same eye side, as the study's protocol builds them. Two models score the
trials; each model's scores carry its own *subject effects* besides trial noise:

* genuine trial of subject i: ``mu + g_i + e``;
* impostor trial, probe of subject i against the reference of subject j: ``p_i + r_j + e``.

Where the effects sit (``probe``, ``both`` or ``reference`` side) is what breaks a bootstrap that
resamples only probe subjects. Under the null both models draw their effects from the same
distribution (equal true EER); a ``shift`` raises one model's genuine scores to give a true EER
difference. :func:`rejection_rate` is the share of data sets in which the paired test rejects at
``alpha``: the false-positive rate under the null, the power under a difference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..core.environment import RunSettings
from .paired import holm, resampled_values, summarize
from .resampling import SubjectResampler

EFFECT_SIDES = {"probe": (1.0, 0.15), "both": (0.7, 0.7), "reference": (0.15, 1.0)}  # (probe sd, reference sd)


@dataclass(frozen=True)
class Design:
    """One simulation setting: data set size, where identity effects sit, their size, trial noise."""

    subjects: int = 40
    enrol: int = 2  # enrolment images per identity (eye)
    probes: int = 2  # probe images per identity
    effect_side: str = "reference"
    effect: float = 0.6  # scale of the subject effects (times EFFECT_SIDES' sds)
    genuine_effect: float = 0.4  # sd of g_i
    noise: float = 0.5  # sd of e
    genuine_mean: float = 2.0

    def __post_init__(self):
        if self.effect_side not in EFFECT_SIDES:
            raise ValueError(f"unknown effect side {self.effect_side!r}; expected one of {list(EFFECT_SIDES)}")


def simulated_trials(design: Design) -> pd.DataFrame:
    """The trial list of a design: ``genuine``, ``probe_subject``, ``reference_subject``, ``probe_image``."""
    rows = []
    identities = [(s, eye) for s in range(design.subjects) for eye in (0, 1)]
    for s, eye in identities:
        for t, eye_t in identities:
            if eye != eye_t:
                continue
            for probe in range(design.probes):
                rows.append((s == t, s, t, probe))
    frame = pd.DataFrame(rows, columns=["genuine", "probe_subject", "reference_subject", "probe_image"])
    return frame.loc[frame.index.repeat(design.enrol)].reset_index(drop=True)


def simulated_scores(design: Design, trials: pd.DataFrame, rng: np.random.Generator, shift: float = 0.0
                     ) -> np.ndarray:
    """One model's scores of ``trials``: its own subject effects on the design's side, plus trial noise."""
    probe_sd, reference_sd = (design.effect * sd for sd in EFFECT_SIDES[design.effect_side])
    n = design.subjects
    p, r, g = rng.normal(0, probe_sd, n), rng.normal(0, reference_sd, n), rng.normal(0, design.genuine_effect, n)
    i, j = trials["probe_subject"].to_numpy(), trials["reference_subject"].to_numpy()
    genuine = trials["genuine"].to_numpy()
    noise = rng.normal(0, design.noise, len(trials))
    return np.where(genuine, design.genuine_mean + shift + g[i], p[i] + r[j]) + noise


def true_eer(design: Design, shift: float = 0.0) -> float:
    """The EER of the score distributions of a design (normal genuine and impostor scores), as a fraction."""
    probe_sd, reference_sd = (design.effect * sd for sd in EFFECT_SIDES[design.effect_side])
    genuine_sd = np.hypot(design.genuine_effect, design.noise)
    impostor_sd = np.sqrt(probe_sd ** 2 + reference_sd ** 2 + design.noise ** 2)
    return float(stats.norm.cdf(-(design.genuine_mean + shift) / (genuine_sd + impostor_sd)))


def shift_for(design: Design, points: float) -> float:
    """The genuine-score shift that lowers a model's true EER by ``points`` percentage points."""
    target = true_eer(design) - points / 100
    genuine_sd = np.hypot(design.genuine_effect, design.noise)
    probe_sd, reference_sd = (design.effect * sd for sd in EFFECT_SIDES[design.effect_side])
    impostor_sd = np.sqrt(probe_sd ** 2 + reference_sd ** 2 + design.noise ** 2)
    return float(-stats.norm.ppf(target) * (genuine_sd + impostor_sd) - design.genuine_mean)


def rejection_rate(design: Design, datasets: int, replicates: int = RunSettings.replicates, alpha: float = 0.05,
                   seed: int = 0,
                   difference_points: float = 0.0, sides=("both", "probe")) -> dict:
    """Share of simulated data sets whose paired EER test rejects at ``alpha``, per resampling scheme.

    With ``difference_points = 0`` the two models have equal true EER (the false-positive rate);
    otherwise model b's true EER is that many points lower (the power). Also returns the bootstrap's
    mean standard error and the true spread of the observed difference across data sets.
    """
    trials = simulated_trials(design)
    genuine = trials["genuine"].to_numpy()
    shift = shift_for(design, difference_points) if difference_points else 0.0
    rng = np.random.default_rng(seed)
    rejected = {side: 0 for side in sides}
    errors = {side: [] for side in sides}
    observed_differences = []
    for k in range(datasets):
        a, b = simulated_scores(design, trials, rng), simulated_scores(design, trials, rng, shift)
        for side in sides:
            resampler = SubjectResampler(genuine, trials["probe_subject"], trials["reference_subject"], replicates,
                                         seed=seed * 100_003 + k, sides=side)
            observed, samples = resampled_values([a, b], resampler)
            difference = summarize("eer", observed[0] - observed[1], samples[:, 0] - samples[:, 1], 1 - alpha)
            rejected[side] += difference.p_value < alpha
            errors[side].append(float(np.std(samples[:, 0] - samples[:, 1], ddof=1)))
        observed_differences.append(difference.difference)
    return {"design": design, "datasets": datasets, "replicates": replicates, "alpha": alpha,
            "difference_points": difference_points,
            "rate": {side: rejected[side] / datasets for side in sides},
            "bootstrap_se": {side: float(np.mean(errors[side])) for side in sides},
            "true_sd": float(np.std(observed_differences, ddof=1)) if datasets > 1 else float("nan")}


def gap_rejection_rate(design: Design, datasets: int, replicates: int = RunSettings.replicates, alpha: float = 0.05,
                       seed: int = 0, group_effect: float = 0.4, extra_effect: float = 0.0) -> dict:
    """Share of simulated data sets in which the paired change of the EER gap between two subject groups, and
    the Holm-adjusted per-group EER changes, reject at ``alpha``.

    Subjects alternate between groups "A" and "B"; in both models the impostor scores between two subjects of
    group B are raised by ``group_effect`` (a real gap that both models share). ``extra_effect`` raises them
    further in model a only: 0 gives the false-positive rate, more the power of "a widens the gap".
    """
    from .conditions import group_masks
    from .subsets import subset_draws

    trials = simulated_trials(design)
    genuine = trials["genuine"].to_numpy()
    groups = pd.Series({str(s): "AB"[s % 2] for s in range(design.subjects)})
    in_b = (trials["probe_subject"] % 2 == 1).to_numpy() & (trials["reference_subject"] % 2 == 1).to_numpy()
    base = {"genuine": genuine, "trial_list": "simulated", "probe_subject": trials["probe_subject"].to_numpy(str),
            "reference_subject": trials["reference_subject"].to_numpy(str)}
    masks = group_masks(base, groups)
    rng = np.random.default_rng(seed)
    gap_rejected = family_rejected = 0
    for k in range(datasets):
        files = {}
        for name, effect in (("a", group_effect + extra_effect), ("b", group_effect)):
            scores = simulated_scores(design, trials, rng)
            files[name] = base | {"scores": np.where(in_b & ~genuine, scores + effect, scores)}
        draws = subset_draws(files, masks, replicates, seed * 100_003 + k)
        gap_rejected += draws.gap_change("a", "b", list(masks), 1 - alpha).p_value < alpha
        p = np.array([draws.change("a", "b", group, "eer", 1 - alpha).p_value for group in masks])
        family_rejected += bool((holm(p) < alpha).any())
    return {"design": design, "datasets": datasets, "replicates": replicates, "alpha": alpha,
            "group_effect": group_effect, "extra_effect": extra_effect,
            "gap_rate": gap_rejected / datasets, "family_rate": family_rejected / datasets}


def family_rejection_rate(design: Design, datasets: int, models: int = 6, replicates: int = RunSettings.replicates,
                          alpha: float = 0.05, seed: int = 0, shift_points: float = 0.0) -> dict:
    """Share of simulated data sets in which any change of a family rejects at ``alpha``: ``models`` models
    against a base, each on three subsets (all trials and each of two subject groups), all read from one set of
    subject draws, by max-T (:func:`.multiplicity.max_t`) and by Holm on the bootstrap p-values.

    Every model draws its scores like the base (the global null: the family-wise error rate) unless
    ``shift_points`` lowers the first model's true EER by that many points (the power to find it).
    """
    from .conditions import group_masks
    from .multiplicity import max_t
    from .subsets import subset_draws

    trials = simulated_trials(design)
    genuine = trials["genuine"].to_numpy()
    base = {"genuine": genuine, "trial_list": "simulated", "probe_subject": trials["probe_subject"].to_numpy(str),
            "reference_subject": trials["reference_subject"].to_numpy(str)}
    masks = {"all": np.ones(len(trials), bool)} | group_masks(
        base, pd.Series({str(s): "AB"[s % 2] for s in range(design.subjects)}))
    shift = shift_for(design, shift_points) if shift_points else 0.0
    rng = np.random.default_rng(seed)
    names = [f"m{k}" for k in range(models)]
    max_t_rejected = holm_rejected = 0
    for k in range(datasets):
        files = {"base": base | {"scores": simulated_scores(design, trials, rng)}}
        files |= {name: base | {"scores": simulated_scores(design, trials, rng, shift if m == 0 else 0.0)}
                  for m, name in enumerate(names)}
        draws = subset_draws(files, masks, replicates, seed * 100_003 + k)
        drawn = [draws.change_draws(name, "base", subset) for name in names for subset in masks]
        family = max_t([o for o, _ in drawn], np.column_stack([d for _, d in drawn]), 1 - alpha)
        p = np.array([draws.change(name, "base", subset, "eer", 1 - alpha).p_value for name in names
                      for subset in masks])
        max_t_rejected += bool((family.p_values < alpha).any())
        holm_rejected += bool((holm(p) < alpha).any())
    return {"design": design, "datasets": datasets, "models": models, "tests": models * len(masks),
            "replicates": replicates, "alpha": alpha, "shift_points": shift_points,
            "max_t_rate": max_t_rejected / datasets, "holm_rate": holm_rejected / datasets}
