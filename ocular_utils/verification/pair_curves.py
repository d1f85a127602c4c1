"""Exact EER and TAR@FAR of one score set under many subject draws at once (what the per-condition analysis needs).

Under the subject bootstrap (:mod:`.resampling`) a trial's weight depends only on its pair of subjects: ``n_i``
for a genuine trial of subject ``i``, ``n_i * n_j`` for an impostor trial between ``i`` and ``j``. So the
weighted cumulative counts that a FAR / FRR curve needs are, at any position of the sorted scores, a
pair-count matrix times the draws' pair weights. :class:`PairCurve` keeps those counts at a coarse grid of
positions (one matrix product gives every draw's curve on the grid), finds the grid cell where each draw's
FAR - FRR changes sign (or FAR falls below the target), and reads the exact curve inside that cell only.

Weights and counts are whole numbers, so every sum is exact in float64 and the result equals
:class:`.metrics.ErrorCurve` under the same weights (the tests check it draw by draw), at a fraction of its
cost on 10^5-10^6 trials: the grid costs ``cells x pairs x draws`` multiply-adds, the cells ``draws x cell size``.
"""
from __future__ import annotations

import numpy as np

from .metrics import ErrorCurve

TOLERANCE = 1e-12  # the ties rule of :mod:`.metrics` (the lowest threshold within this of the minimum)
WINDOW_COST = 1000  # cost of reading one position of a cell against one multiply-add of the grid product (measured)
CELL_ELEMENTS = 2_000_000  # draws x cell width read together (bounds the memory of the cells)


def pair_weights(resampler) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per trial its pair's index, and under every draw the weight of each subject (genuine trials: subjects x
    draws) and of each pair of subjects (impostor trials: pairs x draws) of a both-sides
    :class:`.resampling.SubjectResampler`."""
    subjects = len(resampler.subjects)
    counts = np.zeros((len(resampler.draws), subjects))
    np.add.at(counts, (np.repeat(np.arange(len(resampler.draws)), subjects), resampler.draws.ravel()), 1)
    pairs, pair = np.unique(resampler.probe * subjects + resampler.reference, return_inverse=True)
    i_weights = (counts[:, pairs // subjects] * counts[:, pairs % subjects]).T  # pairs x draws
    return pair, counts.T, i_weights


def trial_pairs(resampler, pair: np.ndarray, mask: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the trials under ``mask`` (all by default): each genuine trial's subject, each impostor trial's index
    among the subset's impostor pairs (``-1`` on the other kind), and those pairs' rows of :func:`pair_weights`."""
    mask = np.ones(len(resampler.genuine), bool) if mask is None else np.asarray(mask, bool)
    genuine = resampler.genuine[mask]
    used, local = np.unique(pair[mask][~genuine], return_inverse=True)
    genuine_pair = np.where(genuine, resampler.probe[mask], -1)
    impostor_pair = np.full(int(mask.sum()), -1)
    impostor_pair[~genuine] = local
    return genuine_pair, impostor_pair, used


def cell_boundaries(thresholds: int, pairs: int) -> int:
    """Distinct scores per grid cell that balance the grid product (cells x pairs) against reading a cell."""
    return max(8, int(np.sqrt(thresholds * max(pairs, 1) / WINDOW_COST)))


class PairCurve:
    """One score set on one trial subset, ready to be read under many subject draws.

    ``genuine_pair`` / ``impostor_pair``: per trial, the index of its subject (genuine) or of its pair of
    subjects (impostor) in the draw's pair weights (``-1`` on the other kind of trial).
    """

    def __init__(self, scores: np.ndarray, genuine: np.ndarray, genuine_pair: np.ndarray, impostor_pair: np.ndarray,
                 genuine_pairs: int, impostor_pairs: int, boundaries_per_cell: int | None = None):
        order = np.argsort(scores, kind="stable")
        self.scores, self.genuine = scores[order], genuine[order]
        self.g_pair, self.i_pair = genuine_pair[order], impostor_pair[order]
        self.exact = ErrorCurve(self.scores[self.genuine], self.scores[~self.genuine])  # the observed curve
        n = len(order)
        starts = np.flatnonzero(np.r_[True, self.scores[1:] != self.scores[:-1]])
        self.boundary = np.zeros(n + 1, bool)  # position r is a threshold: "score < t" holds for the first r trials
        self.boundary[starts] = True
        self.boundary[n] = True  # +inf
        positions = np.r_[starts, n]
        self.grid = positions[::boundaries_per_cell or cell_boundaries(len(positions), genuine_pairs + impostor_pairs)]
        if self.grid[-1] != n:
            self.grid = np.r_[self.grid, n]
        self.width = int(np.diff(self.grid).max()) + 1 if len(self.grid) > 1 else 1
        cell = np.searchsorted(self.grid, np.arange(n), side="right")  # trial r counts from grid point `cell` on
        self.g_counts = self._cumulative(cell[self.genuine], self.g_pair[self.genuine], genuine_pairs)
        self.i_counts = self._cumulative(cell[~self.genuine], self.i_pair[~self.genuine], impostor_pairs)

    def _cumulative(self, cell: np.ndarray, pair: np.ndarray, pairs: int) -> np.ndarray:
        counts = np.bincount(cell * pairs + pair, minlength=len(self.grid) * pairs).reshape(len(self.grid), pairs)
        return np.cumsum(counts, axis=0).astype(float)  # row k: trials before grid point k, per pair

    def _window(self, start_cell: np.ndarray, g_weights: np.ndarray, i_weights: np.ndarray, g_grid, i_grid):
        """Exact cumulative genuine and impostor weights at every position of each draw's cell (draws x width)."""
        draws = np.arange(len(start_cell))
        start = self.grid[start_cell]
        positions = start[:, None] + np.arange(self.width)[None, :]
        end = self.grid[np.minimum(start_cell + 1, len(self.grid) - 1)]
        inside = positions <= end[:, None]
        trial = np.minimum(positions, len(self.scores) - 1)
        is_genuine = self.genuine[trial]
        weights_g = np.where(is_genuine & inside, g_weights[np.maximum(self.g_pair[trial], 0), draws[:, None]], 0.0)
        weights_i = np.where(~is_genuine & inside, i_weights[np.maximum(self.i_pair[trial], 0), draws[:, None]], 0.0)
        g = g_grid[start_cell, draws][:, None] + np.cumsum(weights_g, axis=1) - weights_g  # before position
        i = i_grid[start_cell, draws][:, None] + np.cumsum(weights_i, axis=1) - weights_i
        valid = inside & self.boundary[np.minimum(positions, len(self.scores))]
        return g, i, valid

    def read(self, g_weights: np.ndarray, i_weights: np.ndarray, far: float | None) -> tuple[np.ndarray, np.ndarray]:
        """``(eer, tar)`` per draw: ``g_weights`` (genuine pairs x draws), ``i_weights`` (impostor pairs x draws).
        NaN where a draw gives the subset no genuine or no impostor weight; ``far=None`` reads the EER alone (the
        TAR is NaN), at half the cost."""
        chunk = max(1, CELL_ELEMENTS // self.width)
        parts = [self._read(g_weights[:, k:k + chunk], i_weights[:, k:k + chunk], far)
                 for k in range(0, g_weights.shape[1], chunk)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _read(self, g_weights: np.ndarray, i_weights: np.ndarray, far: float | None
              ) -> tuple[np.ndarray, np.ndarray]:
        g_grid, i_grid = self.g_counts @ g_weights, self.i_counts @ i_weights
        g_total, i_total = g_grid[-1], i_grid[-1]
        usable = (g_total > 0) & (i_total > 0)
        eer, tar = np.full(len(g_total), np.nan), np.full(len(g_total), np.nan)
        if not usable.any():
            return eer, tar
        columns = np.flatnonzero(usable)
        g_grid, i_grid, g_total, i_total = g_grid[:, columns], i_grid[:, columns], g_total[columns], i_total[columns]
        gw, iw = g_weights[:, columns], i_weights[:, columns]
        frr, far_grid = g_grid / g_total, 1.0 - i_grid / i_total
        # EER: the cell after the last grid point where FAR - FRR > 0 holds the minimum of |FAR - FRR|
        start = np.maximum((far_grid - frr > 0).sum(axis=0) - 1, 0)
        g, i, valid = self._window(start, gw, iw, g_grid, i_grid)
        frr_w, far_w = g / g_total[:, None], 1.0 - i / i_total[:, None]
        gap = np.where(valid, np.abs(far_w - frr_w), np.inf)
        first = np.argmax(gap <= gap.min(axis=1, keepdims=True) + TOLERANCE, axis=1)
        rows = np.arange(len(columns))
        eer[columns] = (far_w[rows, first] + frr_w[rows, first]) / 2
        # a minimum at the cell's first point may continue to the left on a flat stretch (trials of subjects the
        # draw left out): FAR - FRR is constant there only when FAR and FRR both are, so the EER is the same
        if far is None:
            return eer, tar
        # TAR@FAR: the first point where FAR <= far lies in the cell that ends at the first such grid point
        reached = np.argmax(far_grid <= far + TOLERANCE, axis=0)  # +inf always qualifies
        start = np.maximum(reached - 1, 0)
        g, i, valid = self._window(start, gw, iw, g_grid, i_grid)
        ok = valid & (1.0 - i / i_total[:, None] <= far + TOLERANCE)
        first = np.argmax(ok, axis=1)
        tar[columns] = 1.0 - g[rows, first] / g_total
        return eer, tar
