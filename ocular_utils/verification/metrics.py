"""Verification metrics on similarity scores (higher = same person).

Conventions (pinned, tested):

* ``FAR(t)`` = share of impostor scores ``>= t``; ``FRR(t)`` = share of genuine scores ``< t``.
* Candidate thresholds are every distinct score plus ``+inf``.
* **EER** (bob.measure's convention): the threshold minimizing ``|FAR - FRR|`` (ties: the lowest
  such threshold), reported as ``(FAR + FRR) / 2`` at that threshold, as a fraction.
* **TAR at FAR = f**: ``1 - FRR(t)`` at the lowest threshold whose ``FAR(t) <= f``.
* ROC/DET curves and AUC come from :mod:`sklearn.metrics`.
* Confidence intervals: percentile bootstrap over *subjects*, both subjects of every trial resampled
  (:mod:`ocular_utils.verification.resampling`: a genuine trial weighted by ``n_i``, an impostor
  trial by ``n_i * n_j``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ..core.environment import RunSettings
from .resampling import SubjectResampler


def _as_scores(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} scores are empty; EER needs genuine and impostor trials")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} scores contain NaN or infinite values")
    return array


@dataclass
class _Curve:
    """FAR and FRR at every candidate threshold (ascending), optionally weighted."""

    thresholds: np.ndarray
    far: np.ndarray
    frr: np.ndarray


class ErrorCurve:
    """Precomputed threshold positions so weighted FAR/FRR curves cost O(n) per weighting."""

    def __init__(self, genuine, impostor):
        self.genuine = _as_scores(genuine, "genuine")
        self.impostor = _as_scores(impostor, "impostor")
        self.g_order = np.argsort(self.genuine, kind="stable")
        self.i_order = np.argsort(self.impostor, kind="stable")
        self.thresholds = np.append(np.unique(np.concatenate([self.genuine, self.impostor])), np.inf)
        self.g_pos = np.searchsorted(self.genuine[self.g_order], self.thresholds, side="left")
        self.i_pos = np.searchsorted(self.impostor[self.i_order], self.thresholds, side="left")

    def curve(self, genuine_weights=None, impostor_weights=None) -> _Curve:
        """FAR/FRR at every threshold; weights default to one per trial."""
        gw = np.ones(len(self.genuine)) if genuine_weights is None else np.asarray(genuine_weights, float)
        iw = np.ones(len(self.impostor)) if impostor_weights is None else np.asarray(impostor_weights, float)
        g_cum = np.concatenate([[0.0], np.cumsum(gw[self.g_order])])
        i_cum = np.concatenate([[0.0], np.cumsum(iw[self.i_order])])
        if g_cum[-1] <= 0 or i_cum[-1] <= 0:
            raise ValueError("genuine and impostor weights must not sum to zero")
        frr = g_cum[self.g_pos] / g_cum[-1]
        far = 1.0 - i_cum[self.i_pos] / i_cum[-1]
        return _Curve(self.thresholds, far, frr)

    def eer(self, genuine_weights=None, impostor_weights=None) -> tuple[float, float]:
        """(EER, threshold) under the pinned convention."""
        return _eer_of(self.curve(genuine_weights, impostor_weights))

    def tar_at_far(self, far: float, genuine_weights=None, impostor_weights=None) -> float:
        """TAR at the lowest threshold whose FAR does not exceed ``far``."""
        return _tar_of(self.curve(genuine_weights, impostor_weights), far)

    def eer_and_tar(self, far: float, genuine_weights=None, impostor_weights=None) -> tuple[float, float]:
        """(EER, TAR at ``far``) from one weighted curve (what a bootstrap replicate needs of both)."""
        c = self.curve(genuine_weights, impostor_weights)
        return _eer_of(c)[0], _tar_of(c, far)


def _eer_of(c: _Curve) -> tuple[float, float]:
    gap = np.abs(c.far - c.frr)
    k = int(np.flatnonzero(gap <= gap.min() + 1e-12)[0])  # ties (up to rounding): the lowest threshold
    return float((c.far[k] + c.frr[k]) / 2), float(c.thresholds[k])


def _tar_of(c: _Curve, far: float) -> float:
    k = int(np.argmax(c.far <= far + 1e-12))  # FAR is non-increasing; +inf always satisfies it
    return float(1.0 - c.frr[k])


def eer(genuine, impostor) -> float:
    """Equal error rate (fraction) of similarity scores; see the module docstring for the convention."""
    return ErrorCurve(genuine, impostor).eer()[0]


def eer_threshold(genuine, impostor) -> float:
    """The score threshold at which :func:`eer` is taken."""
    return ErrorCurve(genuine, impostor).eer()[1]


def tar_at_far(genuine, impostor, far: float) -> float:
    """True accept rate at false accept rate ``far`` (a fraction in (0, 1])."""
    if not 0 < far <= 1:
        raise ValueError(f"far must be in (0, 1] (got {far})")
    return ErrorCurve(genuine, impostor).tar_at_far(far)


def _labels(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))]),
            np.concatenate([genuine, impostor]))


def roc(genuine, impostor) -> pd.DataFrame:
    """ROC curve (``far``, ``tar``, ``threshold``) from :func:`sklearn.metrics.roc_curve`."""
    y, s = _labels(_as_scores(genuine, "genuine"), _as_scores(impostor, "impostor"))
    far, tar, thresholds = skm.roc_curve(y, s, drop_intermediate=True)
    return pd.DataFrame({"far": far, "tar": tar, "threshold": thresholds})


def det(genuine, impostor) -> pd.DataFrame:
    """DET curve (``far``, ``frr``, ``threshold``) from :func:`sklearn.metrics.det_curve`."""
    y, s = _labels(_as_scores(genuine, "genuine"), _as_scores(impostor, "impostor"))
    far, frr, thresholds = skm.det_curve(y, s)
    return pd.DataFrame({"far": far, "frr": frr, "threshold": thresholds})


def auc(genuine, impostor) -> float:
    """Area under the ROC curve."""
    y, s = _labels(_as_scores(genuine, "genuine"), _as_scores(impostor, "impostor"))
    return float(skm.roc_auc_score(y, s))


def bootstrap_over_subjects(scores, genuine_mask, probe_subjects, reference_subjects, far_targets=(1e-2, 1e-3),
                            replicates: int = RunSettings.replicates,
                            seed: int = 0, level: float = 0.95) -> dict:
    """Percentile confidence intervals of EER and TAR@FAR, resampling subjects (both sides of every trial; the
    replicates' spread widened for the number of subjects, :meth:`SubjectResampler.widen`, and kept in [0, 1])."""
    scores = np.asarray(scores, float)
    genuine_mask = np.asarray(genuine_mask, bool)
    resampler = SubjectResampler(genuine_mask, probe_subjects, reference_subjects, replicates, seed)
    curve = ErrorCurve(scores[genuine_mask], scores[~genuine_mask])
    samples = {"eer": []} | {f"tar@far={f:g}": [] for f in far_targets}
    for weights in resampler:
        gw, iw = weights[genuine_mask], weights[~genuine_mask]
        samples["eer"].append(curve.eer(gw, iw)[0])
        for f in far_targets:
            samples[f"tar@far={f:g}"].append(curve.tar_at_far(f, gw, iw))
    if not samples["eer"]:
        raise ValueError("no bootstrap replicate had both genuine and impostor trials; too few subjects")
    alpha = (1 - level) / 2
    samples = {key: np.clip(resampler.widen(np.asarray(v)[:, None])[:, 0], 0.0, 1.0) for key, v in samples.items()}
    intervals = {key: (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) for key, v in samples.items()}
    intervals["replicates"] = len(samples["eer"])
    return intervals


def verification_report(scores, genuine_mask, probe_subjects=None, reference_subjects=None,
                        far_targets=(1e-2, 1e-3), replicates: int = RunSettings.replicates,
                        seed: int = 0) -> dict:
    """EER, AUC and TAR@FAR of one set of trials, with subject-bootstrap intervals when the subjects are given."""
    scores = np.asarray(scores, float)
    genuine_mask = np.asarray(genuine_mask, bool)
    genuine, impostor = scores[genuine_mask], scores[~genuine_mask]
    curve = ErrorCurve(genuine, impostor)
    value, threshold = curve.eer()
    report = {
        "eer": value,
        "eer_threshold": threshold,
        "auc": auc(genuine, impostor),
        "genuine_trials": int(len(genuine)),
        "impostor_trials": int(len(impostor)),
    }
    for f in far_targets:
        report[f"tar@far={f:g}"] = curve.tar_at_far(f)
        report[f"far={f:g} resolvable"] = bool(len(impostor) * f >= 1)
    if probe_subjects is not None and replicates:
        if reference_subjects is None:
            raise ValueError("intervals resample both subjects of every trial: give reference_subjects too")
        intervals = bootstrap_over_subjects(scores, genuine_mask, probe_subjects, reference_subjects, far_targets,
                                            replicates, seed)
        report["bootstrap_replicates"] = intervals.pop("replicates")
        for key, (low, high) in intervals.items():
            report[f"{key} ci_low"], report[f"{key} ci_high"] = low, high
    return report
