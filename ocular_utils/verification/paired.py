"""Paired comparison of models scored on the same trials: a metric's difference, its interval, a p-value.

Trials that share a subject are dependent, so *subjects* are resampled (with replacement, both
subjects of every trial: :mod:`ocular_utils.verification.resampling`), and each replicate uses the
same draw for every model compared (Bolle et al. 1999; Poh et al. 2007): the interval is that of the
difference itself, not two side-by-side intervals. :func:`paired_looks` compares two models at
several budgets with one draw for all their score sets.

Claims and their tests: "a differs from b" is the two-sided paired test; "a is no worse than b"
is non-inferiority (:func:`non_inferior`: the upper bound of the difference below a margin);
"a beats each of b1..bk" is an intersection-union test, at level alpha when every raw p is below
alpha (Berger 1982; :func:`beats_all`); "a is worse than at least one" takes Holm's correction
(:func:`holm`).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.environment import RunSettings
from .metrics import ErrorCurve
from .pair_curves import PairCurve, pair_weights, trial_pairs
from .resampling import SubjectResampler, resampler_for

# A metric on weighted trials: (scores, genuine mask, per-trial weights) -> value
Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class PairedDifference:
    """``metric(a) - metric(b)`` on the same trials, with its bootstrap interval and two-sided p-value."""

    metric: str
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    replicates: int
    level: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero (the two-sided test rejects at ``1 - level``)."""
        return bool(self.ci_low > 0 or self.ci_high < 0)

    @property
    def sign(self) -> int:
        """+1 or -1 when the difference is significant, else 0."""
        return int(np.sign(self.difference)) if self.significant else 0


def _curve_metric(metric: str, scores: np.ndarray, genuine: np.ndarray) -> Callable[[np.ndarray], float]:
    """``weights -> value`` of a named metric (``eer`` or ``tar@far=<f>``) on fixed scores."""
    curve = ErrorCurve(scores[genuine], scores[~genuine])
    if metric == "eer":
        return lambda w: curve.eer(w[genuine], w[~genuine])[0]
    if metric.startswith("tar@far="):
        far = float(metric.split("=", 1)[1])
        return lambda w: curve.tar_at_far(far, w[genuine], w[~genuine])
    raise ValueError(f"unknown metric {metric!r}; expected 'eer', 'tar@far=<f>' or a function "
                     "(scores, genuine, weights) -> value")


def metric_function(metric: str | Metric, scores, genuine) -> Callable[[np.ndarray], float]:
    """``weights -> value`` of ``metric`` on one model's ``scores`` of a trial list."""
    scores, genuine = np.asarray(scores, float).ravel(), np.asarray(genuine, bool).ravel()
    if len(scores) != len(genuine):
        raise ValueError(f"the models must be scored on the same trials: {len(scores)} scores for "
                         f"{len(genuine)} trials")
    if callable(metric):
        return lambda w: float(metric(scores, genuine, w))
    return _curve_metric(metric, scores, genuine)


_READ_CACHE: OrderedDict = OrderedDict()  # (draws, metric, scores) fingerprints -> one set's values under every draw
READ_CACHE_SIZE = 2048  # entries of a few kB each: every score set a chapter reads, under its draws


def _fingerprint(values: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(values, float).view(np.uint8), digest_size=16).digest()


def _read_every_draw(score_sets: list, resampler: SubjectResampler, metric: str) -> np.ndarray:
    """A named metric of every score set under every draw (draws x sets), read exactly from pair counts
    (:class:`.pair_curves.PairCurve`: the values of weighting every trial, at a fraction of the cost); NaN in a
    draw without genuine or impostor weight.

    A chapter pairs one model with many others under the same draws (same trial list and seed), so each score
    set's values are kept, keyed by the fingerprints of the draws and trials, the metric and the scores
    themselves: a set is read once per draw set, and a changed score or draw is a new key."""
    far = float(metric.split("=", 1)[1]) if metric.startswith("tar@far=") else None  # None: the EER alone
    sets = [np.asarray(scores, float).ravel() for scores in score_sets]
    keys = [(resampler.fingerprint, metric, _fingerprint(scores)) for scores in sets]
    missing = [k for k, key in enumerate(keys) if key not in _READ_CACHE]
    if missing:
        pair, g_weights, i_weights = pair_weights(resampler)
        genuine_pair, impostor_pair, used = trial_pairs(resampler, pair)
        i_weights = i_weights[used]
        for k in missing:
            if keys[k] in _READ_CACHE:  # the same set twice in one call
                continue
            curve = PairCurve(sets[k], resampler.genuine, genuine_pair, impostor_pair, g_weights.shape[0], len(used))
            eer, tar = curve.read(g_weights, i_weights, far)
            _READ_CACHE[keys[k]] = eer if metric == "eer" else tar
    for key in keys:
        _READ_CACHE.move_to_end(key)
    columns = np.stack([_READ_CACHE[key] for key in keys], axis=1)
    while len(_READ_CACHE) > READ_CACHE_SIZE:
        _READ_CACHE.popitem(last=False)
    return columns


def resampled_values(score_sets: list, resampler: SubjectResampler, metric: str | Metric = "eer",
                     by_pairs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(observed, samples)``: the metric of each score set, and its value under every draw (rows).

    All score sets belong to the resampler's trial list and see the same draws; a draw where any
    value is not finite (a metric on a subset the draw left without genuine or impostor trials) is
    dropped, then the samples' spread is widened for the number of subjects
    (:meth:`SubjectResampler.widen`). A named metric under the both-sides bootstrap is read from pair counts
    (``by_pairs``, the default); ``by_pairs=False`` weights every trial under every draw, the same values slower
    (``benchmarks/paired_speed.py`` times both).
    """
    functions = [metric_function(metric, scores, resampler.genuine) for scores in score_sets]
    ones = np.ones(len(resampler.genuine))
    observed = np.array([f(ones) for f in functions])
    if by_pairs and isinstance(metric, str) and resampler.sides == "both":
        samples = _read_every_draw(score_sets, resampler, metric)
    else:
        samples = np.array([[f(w) for f in functions] for w in resampler]).reshape(-1, len(functions))
    samples = samples[np.isfinite(samples).all(axis=1)]  # a metric on a subset is NaN in a draw that empties it
    if not len(samples):
        raise ValueError("no bootstrap replicate had both genuine and impostor trials; too few subjects")
    return observed, resampler.widen(samples)


def summarize(name: str, observed: float, samples: np.ndarray, level: float) -> PairedDifference:
    """A :class:`PairedDifference` from an observed difference and its bootstrap samples.

    Percentile interval at ``level``; two-sided p-value ``min(1, 2 (k + 1) / (n + 1))`` where ``k``
    counts the ``n`` replicates on the smaller side of zero (never zero: Davison & Hinkley 1997).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    alpha = (1 - level) / 2
    tail = min(np.sum(samples <= 0), np.sum(samples >= 0))
    p_value = min(1.0, 2 * (tail + 1) / (len(samples) + 1))
    return PairedDifference(name, float(observed), float(np.quantile(samples, alpha)),
                            float(np.quantile(samples, 1 - alpha)), float(p_value), len(samples), level)


def paired_difference(scores_a, scores_b, trials, metric: str | Metric = "eer",
                      replicates: int = RunSettings.replicates, seed: int = 0, level: float = 0.95
                      ) -> PairedDifference:
    """Difference ``metric(a) - metric(b)`` of two models scored on the identical trial list.

    ``trials`` holds the trial list's ``genuine`` mark and both subjects of every trial
    (``probe_subject``, ``reference_subject``): a trials frame or a loaded score file. Every replicate
    draws subjects once and weights the trials for both models alike (:class:`SubjectResampler`).
    """
    resampler = resampler_for(trials, replicates, seed)
    observed, samples = resampled_values([scores_a, scores_b], resampler, metric)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    return summarize(name, observed[0] - observed[1], samples[:, 0] - samples[:, 1], level)


def same_trials(a: dict, b: dict, name_a: str = "a", name_b: str = "b") -> None:
    """Refuse two score files scored on different trial lists (a paired comparison needs the same trials)."""
    if a["trial_list"] != b["trial_list"]:
        raise ValueError(f"{name_a} and {name_b} were scored on different trial lists ({a['trial_list']} vs "
                         f"{b['trial_list']}); a paired comparison needs the same trials")


def compare_scores(a: dict, b: dict, metric: str | Metric = "eer", replicates: int = RunSettings.replicates,
                   seed: int = 0, level: float = 0.95, names: tuple[str, str] = ("a", "b")) -> PairedDifference:
    """The paired difference ``metric(a) - metric(b)`` of two loaded score files (trial lists checked first)."""
    same_trials(a, b, *names)
    return paired_difference(a["scores"], b["scores"], a, metric, replicates, seed, level)


@dataclass(frozen=True)
class Looks:
    """A comparison of two models looked at several budgets with one subject draw.

    ``differences`` maps each look (a budget in images, or any label) to its :class:`PairedDifference`;
    ``change`` is the difference at the last look minus that at the first (same draws), at ``level``.
    ``samples`` keeps each look's bootstrap differences, so other levels cost nothing (:meth:`at_level`).
    """

    differences: dict
    change: PairedDifference | None
    samples: dict

    def at_level(self, look, level: float) -> PairedDifference:
        """The difference at ``look`` with its interval at another ``level`` (the same draws)."""
        return summarize(self.differences[look].metric, self.differences[look].difference, self.samples[look], level)

    def between(self, first, last, level: float) -> PairedDifference:
        """The change of the difference from look ``first`` to look ``last`` (same draws), at ``level``."""
        observed = self.differences[last].difference - self.differences[first].difference
        return summarize(self.differences[last].metric, observed, self.samples[last] - self.samples[first], level)


def paired_looks(pairs: dict, replicates: int = RunSettings.replicates, seed: int = 0, level: float = 0.95,
                 change_level: float | None = None, metric: str | Metric = "eer") -> Looks:
    """Paired differences of two models at several looks, all score sets under one subject draw.

    ``pairs`` maps a look to ``(scores_a, scores_b)`` (loaded score files on one trial list). The
    change of the difference from the first look to the last has its own interval
    (``change_level``, default ``level``): what a non-inferiority claim needs to be stable.
    """
    if not pairs:
        raise ValueError("paired_looks needs at least one look")
    files = [f for pair in pairs.values() for f in pair]
    for other in files[1:]:
        same_trials(files[0], other, "the first score set", "another")
    resampler = resampler_for(files[0], replicates, seed)
    observed, samples = resampled_values([f["scores"] for f in files], resampler, metric)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    diffs, diff_samples = {}, {}
    for k, look in enumerate(pairs):
        diff_samples[look] = samples[:, 2 * k] - samples[:, 2 * k + 1]
        diffs[look] = summarize(name, observed[2 * k] - observed[2 * k + 1], diff_samples[look], level)
    looks = list(pairs)
    change = None
    if len(looks) > 1:
        first, last = looks[0], looks[-1]
        change = summarize(name, diffs[last].difference - diffs[first].difference,
                           diff_samples[last] - diff_samples[first], change_level or level)
    return Looks(diffs, change, diff_samples)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` (same order); adjusted values never exceed 1."""
    p = np.asarray(p_values, float)
    if p.ndim != 1 or not np.isfinite(p).all() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"p-values must be a 1-d list of numbers in [0, 1], no NaN (got {p_values!r})")
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def beats_all(differences, alpha: float) -> bool:
    """Intersection-union test of "a is better (lower) than every b": every difference below 0 at raw p < alpha."""
    differences = list(differences)
    return bool(differences) and all(d.difference < 0 and d.ci_high < 0 and d.p_value < alpha for d in differences)


def non_inferior(difference: PairedDifference, margin: float) -> bool:
    """Non-inferiority of a to b: the interval's upper bound of ``metric(a) - metric(b)`` lies below ``margin``."""
    if margin <= 0:
        raise ValueError(f"a non-inferiority margin must be positive (got {margin})")
    return bool(difference.ci_high < margin)


def still_improving(change: PairedDifference) -> bool:
    """Information only: a model's EER fell measurably from one budget to the next (the interval is below 0)."""
    return bool(change.ci_high < 0)
