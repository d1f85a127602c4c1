"""The one subject bootstrap of the study: both subjects of every trial resampled.

A verification trial compares a probe image of subject *i* with a reference (enrolment) image of
subject *j*; genuine trials have ``i == j``. Identity moves scores on both sides (cosine scores are
symmetric), so a bootstrap replicate draws *subjects* with replacement and weights each trial by
how often its subjects were drawn: a genuine trial by ``n_i``, an impostor trial by ``n_i * n_j``
(Bolle et al.'s subsets bootstrap). Resampling the probe subject alone ignores the reference side
and rejects a true null far too often when identity effects sit on that side
(``benchmarks/paired_calibration.py`` measures it). Every interval and paired difference of the
study goes through :class:`SubjectResampler`.

With ``n`` subjects the bootstrap's variance is ``(n - 1) / n`` of the true one (exactly so for a
mean over subjects; Davison & Hinkley 1997, sec. 2.3), which makes a test with 40 subjects reject a
true null about 1 point too often; :meth:`SubjectResampler.widen` rescales the replicates' spread by
``sqrt(n / (n - 1))`` around their mean before any interval or p-value is read from them.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np
import pandas as pd

from ..core.environment import RunSettings


class SubjectResampler:
    """Seeded subject draws for one trial list and the trial weights each draw gives.

    ``probe_subjects`` and ``reference_subjects`` name both subjects of every trial; ``genuine``
    marks genuine trials. The same resampler (and so the same draws) serves any number of score
    sets of that trial list: paired comparisons use one draw for every model and every budget.

    ``sides="probe"`` weights every trial by its probe subject's draw count alone: the older, biased
    scheme, kept only so that the calibration benchmark can show what it gets wrong.
    """

    def __init__(self, genuine, probe_subjects, reference_subjects, replicates: int = RunSettings.replicates,
                 seed: int = 0, sides: str = "both"):
        if sides not in ("both", "probe"):
            raise ValueError(f"sides must be 'both' or 'probe' (got {sides!r})")
        self.sides = sides
        self.genuine = np.asarray(genuine, bool).ravel()
        probe, reference = np.asarray(probe_subjects).ravel(), np.asarray(reference_subjects).ravel()
        if not len(self.genuine) == len(probe) == len(reference):
            raise ValueError(f"{len(self.genuine)} trials but {len(probe)} probe and {len(reference)} reference "
                             "subjects; every trial needs both of its subjects")
        codes, self.subjects = pd.factorize(pd.Series(np.concatenate([probe, reference]).astype(object)))
        if (codes < 0).any():
            raise ValueError(f"{int((codes < 0).sum())} trial sides have no subject (NaN/None); every trial needs "
                             "its probe and its reference subject")
        self.probe, self.reference = codes[:len(probe)], codes[len(probe):]
        mismatched = self.genuine & (self.probe != self.reference)
        if mismatched.any():
            raise ValueError(f"{int(mismatched.sum())} genuine trials have different probe and reference subjects")
        if replicates < 1:
            raise ValueError(f"replicates must be at least 1 (got {replicates})")
        rng = np.random.default_rng(seed)
        self.draws = rng.integers(0, len(self.subjects), (replicates, len(self.subjects)))

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """A digest of everything the draws' trial weights depend on: trial kinds, both subjects' codes, the draws
        and the scheme (two resamplers with equal fingerprints weight every trial alike under every draw)."""
        digest = hashlib.blake2b(self.sides.encode(), digest_size=16)
        for values in (self.genuine, self.probe, self.reference, self.draws):
            digest.update(np.ascontiguousarray(values).view(np.uint8))
        return digest.digest()

    @property
    def replicates(self) -> int:
        """Number of draws."""
        return len(self.draws)

    def weights(self, draw: np.ndarray) -> np.ndarray:
        """Per-trial weights of one draw: ``n_i`` for a genuine trial, ``n_i * n_j`` for an impostor trial."""
        counts = np.bincount(draw, minlength=len(self.subjects)).astype(float)
        probe, reference = counts[self.probe], counts[self.reference]
        if self.sides == "probe":
            return probe
        return np.where(self.genuine, probe, probe * reference)

    @property
    def spread_correction(self) -> float:
        """``sqrt(n / (n - 1))`` for ``n`` subjects: the factor that removes the bootstrap's small-sample shrinkage."""
        n = len(self.subjects)
        return float(np.sqrt(n / (n - 1))) if n > 1 else 1.0

    def widen(self, samples: np.ndarray) -> np.ndarray:
        """Bootstrap values (one row per replicate) with their spread around each column's mean widened by
        :attr:`spread_correction`."""
        samples = np.asarray(samples, float)
        centre = samples.mean(axis=0, keepdims=True)
        return centre + (samples - centre) * self.spread_correction

    def __iter__(self):
        """Weights of every usable draw (a draw without genuine or without impostor weight is skipped)."""
        for draw in self.draws:
            weights = self.weights(draw)
            if weights[self.genuine].sum() > 0 and weights[~self.genuine].sum() > 0:
                yield weights


def resampler_for(trials: dict | pd.DataFrame, replicates: int = RunSettings.replicates,
                  seed: int = 0) -> SubjectResampler:
    """The resampler of a trial list: a trials frame or a loaded score file (with both subjects of every trial)."""
    genuine = np.asarray(trials["genuine"], bool)
    return SubjectResampler(genuine, trials["probe_subject"], trials["reference_subject"], replicates, seed)
