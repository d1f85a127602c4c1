"""Study-wide constants of the comparison, in the ground floor so every stage can read them.

The paper's method, the test level, the size factor within which a student has pruned partners,
and the bootstrap replicates every verdict's comparison gets at least.
"""
from __future__ import annotations

import math

import numpy as np

PAPER_METHOD = "layer_weight"  # the paper's best pruning method (layerwise magnitude of the weights)
ALPHA = 0.05
FAIR_FACTOR = 1.5  # a student's partners are pruned models within this factor of its compression
# Bootstrap replicates of the verdicts' comparisons at least: the smallest p-value is 2 / (n + 1), and
# Holm multiplies it by up to 7 comparisons (a student against every pruning method)
VERDICT_REPLICATES = 1000


def fair_ratio(compression: float, grid, factor: float = FAIR_FACTOR) -> float | None:
    """The grid ratio nearest (in log scale) to ``compression`` if within ``factor`` of it, else ``None``.

    With a grid that doubles (2, 4, 8, ...) every compression inside it has a ratio within sqrt(2).
    """
    ratios = np.array(sorted(float(r) for r in grid))
    if not len(ratios) or not compression or compression <= 0:
        return None
    nearest = float(ratios[np.argmin(np.abs(np.log(ratios) - math.log(compression)))])
    return nearest if max(nearest / compression, compression / nearest) <= factor else None
