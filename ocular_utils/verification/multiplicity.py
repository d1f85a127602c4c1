"""Tests over a family of statistics read from one set of subject draws.

Holm (:func:`.paired.holm`) adjusts p-values; a bootstrap p is never below ``2 / (draws + 1)``, so over a
family of hundreds of tests Holm's smallest adjusted p stays above ``family size x 2 / (draws + 1)`` whatever
the effect. An effect picked as the largest of a big family gets its family-wise p and a simultaneous
interval from the draws themselves instead: single-step max-T (Westfall & Young 1993, *Resampling-Based
Multiple Testing*), whose p is never below ``1 / (draws + 1)`` whatever the family's size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FamilyWise:
    """Single-step max-T over a family of statistics read from one set of draws (Westfall & Young 1993).

    ``p_values[i]`` is the share of draws whose largest studentized deviation over the whole family reaches
    statistic ``i``'s own (``(k + 1) / (n + 1)``: never below ``1 / (n + 1)``, whatever the family's size);
    ``ci_low`` / ``ci_high`` are simultaneous intervals (all cover at ``level`` together), ``critical`` their
    half-width in standard deviations.
    """

    p_values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    critical: float
    replicates: int
    level: float


def max_t(observed, samples, level: float = 0.95) -> FamilyWise:
    """Family-wise p-values and simultaneous intervals of ``observed`` (``m`` statistics) from ``samples``
    (``draws x m``, the same draws for every statistic; NaN where a draw leaves a statistic undefined).

    Each statistic's draws are centred on their mean and scaled by their standard deviation; a draw's maximum
    absolute value over the family is the null distribution every statistic is read against.
    """
    observed, samples = np.asarray(observed, float).ravel(), np.asarray(samples, float)
    if samples.ndim != 2 or samples.shape[1] != len(observed) or not len(observed):
        raise ValueError(f"max_t needs draws x statistics samples for {len(observed)} statistics "
                         f"(got shape {samples.shape})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    defined = np.isfinite(samples).any(axis=0)
    if not (np.isfinite(observed).all() and defined.all()):
        raise ValueError("max_t needs a finite value and at least one finite draw for every statistic; leave "
                         "statistics that cannot be read out of the family")
    centre, spread = np.nanmean(samples, axis=0), np.nanstd(samples, axis=0)
    varies = spread > 0  # a statistic the same in every draw (e.g. two identical models) never deviates
    with np.errstate(divide="ignore", invalid="ignore"):
        deviations = np.where(varies, np.abs(samples - centre) / np.where(varies, spread, 1), 0.0)
        own = np.where(varies, np.abs(observed) / np.where(varies, spread, 1), np.where(observed == 0, 0, np.inf))
    deviations[~np.isfinite(samples)] = np.nan
    usable = np.isfinite(deviations).any(axis=1)
    largest = np.nanmax(deviations[usable], axis=1)
    exceeded = (largest[:, None] >= own[None, :]).sum(axis=0)
    critical = float(np.quantile(largest, level))
    return FamilyWise((exceeded + 1) / (len(largest) + 1), observed - critical * spread,
                      observed + critical * spread, critical, len(largest), level)
