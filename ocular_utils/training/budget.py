"""Training budgets in images, and how one run delivers a finished model at each of them.

Every compressed model (fine-tuning after the base) and every student gets a budget ``B`` of
training images (:class:`BudgetConfig`, the profile's ``budget`` section), so they are compared at
matched budgets. A model at a budget is a *finished* model: its schedule ends there. One run
delivers finished models at several points (``B/2, B, 2B``, ...) by warmup-stable-decay: a
constant-rate trunk (after warm-up), and at each point a short branch off the trunk that decays
the rate linearly to zero over the last ``decay_fraction`` of the point's images. The branch's
end is the model at that point; the trunk goes on from where the branch left it
(:mod:`ocular_utils.training.along`). This module holds the arithmetic: where the trunk forks and
how it is cut into chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..core.config import Settings


@dataclass
class BudgetConfig(Settings):
    """The ``budget`` section: the matched budget, the points along the way, and which runs go past it."""

    images: int = 3072  # B: training images after the base (compressed models) or from scratch (students)
    points: list = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0, 2.0])  # fractions of B (runs that go on)
    decay_fraction: float = 0.2  # share of each point's images in its decay branch (warmup-stable-decay)
    warmup_fraction: float = 0.1  # share of B in the warm-up at the start of every budgeted run
    headline_ratio: float = 8  # every method at this compression runs the points past B, as do all students
    short_ratios: list = field(default_factory=lambda: [32])  # ratios away from the headline: a shorter budget
    short_fraction: float = 0.5  # their budget, as a fraction of B
    seeds: list = field(default_factory=lambda: [1, 2])  # extra seeds of the headline models (seed 0 is the grid)
    margin: float = 1.0  # delta, EER points: the non-inferiority margin of "no worse" claims
    matched_total: bool = True  # the KD finding's students also train for the base's images + B
    dedicated_check: bool = True  # compare the branch model at B with a run decayed to zero at B (once)

    def __post_init__(self):
        if self.images < 1 or not self.points or 1.0 not in self.points:
            raise ValueError(f"budget: images >= 1 and points holding 1.0 (the budget itself) are required "
                             f"(got images={self.images}, points={self.points})")
        if not 0 < self.short_fraction <= 1:
            raise ValueError(f"budget.short_fraction must be in (0, 1] (got {self.short_fraction})")
        if not 0 <= self.decay_fraction < 1:
            raise ValueError(f"budget.decay_fraction must be in [0, 1) (got {self.decay_fraction})")
        if not 0 <= self.warmup_fraction < 0.5:
            raise ValueError(f"budget.warmup_fraction must be in [0, 0.5) (got {self.warmup_fraction})")
        if self.margin <= 0:
            raise ValueError(f"budget.margin must be a positive number of EER points (got {self.margin})")

    def for_run(self, extended: bool, ratio: float | None = None, full: bool = False, images: int | None = None
                ) -> dict:
        """The ``budget`` parameter of one run: its images, points (past 1.0 only when ``extended``), decay, warm-up.

        Ratios in ``short_ratios`` get ``short_fraction`` of the budget unless ``full``; ``images``
        replaces the budget (students at matched total training).
        """
        images = images or self.images
        if not full and ratio is not None and any(math.isclose(ratio, r) for r in self.short_ratios):
            images = int(round(images * self.short_fraction))
        points = [p for p in sorted(self.points) if extended or p <= 1.0]
        return {"images": images, "points": points, "decay_fraction": self.decay_fraction,
                "warmup_fraction": self.warmup_fraction}

    def looks(self) -> tuple[float, float]:
        """The two budgets a comparison is looked at, as fractions of B: B and 2B (fixed in advance)."""
        return 1.0, 2.0


@dataclass(frozen=True)
class Fork:
    """A point of a run: after ``trunk_batches`` of the trunk, a branch of ``branch_batches`` decays to zero."""

    point: float
    images: int  # the finished model's training images (trunk + branch)
    trunk_batches: int
    branch_batches: int


@dataclass
class RunBudget(Settings):
    """One run's budget: ``images`` (the record's budget), ``points`` (fractions of it), the decay and warm-up shares.

    The warm-up lasts ``warmup_fraction`` of ``images`` whatever the data set's size, so every point's
    trunk is past it (a warm-up counted in passes would be half of a small budget).
    """

    images: int = BudgetConfig.images
    points: list = field(default_factory=lambda: [1.0])
    decay_fraction: float = BudgetConfig.decay_fraction
    warmup_fraction: float = BudgetConfig.warmup_fraction

    def __post_init__(self):
        if self.images < 1 or not self.points or any(p <= 0 for p in self.points):
            raise ValueError(f"budget: images >= 1 and positive points are required (got {self.images}, "
                             f"{self.points})")
        if not 0 <= self.decay_fraction < 1:
            raise ValueError(f"budget.decay_fraction must be in [0, 1) (got {self.decay_fraction})")
        if not 0 <= self.warmup_fraction < 0.5:
            raise ValueError(f"budget.warmup_fraction must be in [0, 0.5) (got {self.warmup_fraction})")

    def warmup_passes(self, epoch_images: int) -> float:
        """The run's warm-up in passes over ``epoch_images`` training images (``warmup_fraction`` of its budget)."""
        return self.warmup_fraction * self.images / epoch_images

    @property
    def extended(self) -> bool:
        """True when the run goes on past its budget (and then scores the test trials at each point)."""
        return max(self.points) > 1.0

    def forks(self, batch_size: int) -> list[Fork]:
        """The run's points in order: where the trunk forks and how long each branch is, in batches."""
        forks = []
        for point in sorted(self.points):
            total = round(point * self.images / batch_size)
            if total < 1:
                raise ValueError(f"budget of {self.images} images with points {self.points}: point {point:g} "
                                 f"({point * self.images:g} images) is less than one batch of {batch_size}")
            branch = min(total - 1, max(1, round(self.decay_fraction * total))) if self.decay_fraction else 0
            trunk = total - branch
            if trunk < 1:
                raise ValueError(f"budget of {self.images} images with points {self.points}: point {point:g} "
                                 f"({point * self.images:g} images) leaves less than one batch of {batch_size} "
                                 "for the trunk before its decay")
            forks.append(Fork(point, int(round(point * self.images)), trunk, total - trunk))
        return forks

    def chunks(self, batch_size: int, epoch_images: int) -> tuple[list[int], dict[int, list[Fork]]]:
        """``(batches of each trunk chunk, {chunk number (1-based): forks at its end})``.

        The trunk is cut at every fork and within each stretch into chunks of at most one pass over
        the ``epoch_images`` training images (each chunk reshuffles). Points close together (small
        budgets) may fork at the same place: their branches then differ only in length.
        """
        per_pass = max(1, epoch_images // batch_size)
        chunks, at, done = [], {}, 0
        for fork in self.forks(batch_size):
            stretch = fork.trunk_batches - done
            if stretch:
                pieces = math.ceil(stretch / per_pass)
                chunks += [stretch // pieces + (1 if k < stretch % pieces else 0) for k in range(pieces)]
            at.setdefault(len(chunks), []).append(fork)
            done = fork.trunk_batches
        return chunks, at

    def trained_images(self, batch_size: int) -> int:
        """Every image the run trains on: the trunk to its last fork plus every branch."""
        forks = self.forks(batch_size)
        return batch_size * (forks[-1].trunk_batches + sum(f.branch_batches for f in forks))
