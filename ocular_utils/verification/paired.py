"""Paired comparison of two models scored on the same trials: a metric's difference, its interval, a p-value.

Trials that share a subject are dependent, so *subjects* are resampled (with replacement), and
each replicate uses the same draw for both models (Bolle et al. 1999; Poh et al. 2007): the
interval is that of the difference itself, not two side-by-side intervals. Several comparisons
against one model are corrected with Holm's step-down method (:func:`holm`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..core.environment import RunSettings
from .metrics import ErrorCurve

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
    def half_width(self) -> float:
        """Half the width of the interval (the convergence rule's yardstick)."""
        return (self.ci_high - self.ci_low) / 2


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


def _metric_function(metric: str | Metric, scores: np.ndarray, genuine: np.ndarray) -> Callable[[np.ndarray], float]:
    if callable(metric):
        return lambda w: float(metric(scores, genuine, w))
    return _curve_metric(metric, scores, genuine)


def subject_draws(subjects, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, draws)``: each trial's subject index, and ``replicates`` resamples of the subjects (rows)."""
    codes, uniques = pd.factorize(pd.Series(subjects))
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} trials have no subject; every trial needs its probe subject")
    rng = np.random.default_rng(seed)
    return codes, rng.integers(0, len(uniques), (replicates, len(uniques)))


def paired_difference(scores_a, scores_b, genuine, subjects, metric: str | Metric = "eer",
                      replicates: int = RunSettings.replicates, seed: int = 0, level: float = 0.95
                      ) -> PairedDifference:
    """Difference ``metric(a) - metric(b)`` of two models scored on the identical trial list.

    ``genuine`` marks genuine trials and ``subjects`` gives each trial's probe subject; both belong to
    the one trial list that ``scores_a`` and ``scores_b`` score (lists of different length are
    refused). Every replicate resamples subjects once and weights each trial by how often its subject
    was drawn, for both models alike. Returns the observed difference, the percentile interval at
    ``level``, and the two-sided bootstrap p-value ``min(1, 2 (k + 1) / (n + 1))`` where ``k`` counts the
    ``n`` replicates on the smaller side of zero (``d* <= 0`` or ``d* >= 0``).
    """
    scores_a, scores_b = np.asarray(scores_a, float).ravel(), np.asarray(scores_b, float).ravel()
    genuine = np.asarray(genuine, bool).ravel()
    subjects = np.asarray(subjects).ravel()
    if not len(scores_a) == len(scores_b) == len(genuine) == len(subjects):
        raise ValueError(f"the two models must be scored on the same trials: {len(scores_a)} and {len(scores_b)} "
                         f"scores for {len(genuine)} trials with {len(subjects)} subjects")
    if replicates < 1 or not 0 < level < 1:
        raise ValueError(f"replicates >= 1 and 0 < level < 1 are required (got {replicates}, {level})")
    value_a = _metric_function(metric, scores_a, genuine)
    value_b = _metric_function(metric, scores_b, genuine)
    ones = np.ones(len(genuine))
    observed = value_a(ones) - value_b(ones)
    codes, draws = subject_draws(subjects, replicates, seed)
    samples = []
    for draw in draws:
        weights = np.bincount(draw, minlength=codes.max() + 1).astype(float)[codes]
        if weights[genuine].sum() == 0 or weights[~genuine].sum() == 0:
            continue  # a draw without genuine (or impostor) trials has no metric
        samples.append(value_a(weights) - value_b(weights))
    if not samples:
        raise ValueError("no bootstrap replicate had both genuine and impostor trials; too few subjects")
    samples = np.asarray(samples)
    alpha = (1 - level) / 2
    # (k + 1) / (n + 1): a bootstrap p-value is never zero, only below 1 / (n + 1) (Davison & Hinkley 1997)
    tail = min(np.sum(samples <= 0), np.sum(samples >= 0))
    p_value = min(1.0, 2 * (tail + 1) / (len(samples) + 1))
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    return PairedDifference(name, float(observed), float(np.quantile(samples, alpha)),
                            float(np.quantile(samples, 1 - alpha)), float(p_value), len(samples), level)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` (same order); adjusted values never exceed 1."""
    p = np.asarray(p_values, float)
    if p.ndim != 1 or ((p < 0) | (p > 1)).any():
        raise ValueError(f"p-values must be a 1-d list of numbers in [0, 1] (got {p_values!r})")
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def is_converged(change: PairedDifference) -> bool:
    """The convergence rule: doubling the budget moved the metric by less than the change's interval half-width.

    ``change`` is the paired difference between a model at twice the budget and at the budget, on
    the same trials. Identical scores (a zero change with a zero-width interval: validation kept the
    same model) count as converged.
    """
    unchanged = change.difference == 0 and change.ci_low == change.ci_high == 0
    return bool(abs(change.difference) < change.half_width or unchanged)
