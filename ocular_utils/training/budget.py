"""Training budgets in images, and evaluation along the way.

Every compressed model (fine-tuning after the base) and every student (training from scratch)
gets the same budget ``B`` of training images (:class:`BudgetConfig`, the profile's ``budget``
section), so they are compared at matched budgets. One run records validation EER (and, for the
headline runs, test scores) at log-spaced points such as ``B/8, B/4, B/2, B, 2B``: the model at
each point is the one a run stopped there would deliver (the best so far on *validation*
identities among the points). The run's model and record are those at ``B``; headline runs go on
to ``2B`` only to show whether ``B`` was enough (:func:`convergence`).

A run is cut into equal chunks of ``B * min(points)`` images (the loop's "epochs": each reshuffles
and draws that many images), so the schedule does not depend on where the run stops when the
learning rate is constant after warm-up.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..core.atomic import atomic_torch_save, load_state
from ..core.config import Settings
from ..verification.paired import is_converged, paired_difference
from ..verification.scoring import load_trial_scores, save_scores
from .loop import TrainConfig


@dataclass
class BudgetConfig(Settings):
    """The ``budget`` section: the matched budget, the points along the way, and which runs go past it."""

    images: int = 3072  # B: training images after the base (compressed models) or from scratch (students)
    points: list = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0, 2.0])  # fractions of B (headline runs)
    headline_ratio: float = 8  # every method at this compression runs the points past B, as do all students
    short_ratios: list = field(default_factory=lambda: [32])  # ratios away from the headline: a shorter budget
    short_fraction: float = 0.5  # their budget, as a fraction of B
    seeds: list = field(default_factory=lambda: [1, 2])  # extra seeds of the headline models (seed 0 is the grid)

    def __post_init__(self):
        if self.images < 1 or not self.points or 1.0 not in self.points:
            raise ValueError(f"budget: images >= 1 and points holding 1.0 (the budget itself) are required "
                             f"(got images={self.images}, points={self.points})")
        if not 0 < self.short_fraction <= 1:
            raise ValueError(f"budget.short_fraction must be in (0, 1] (got {self.short_fraction})")

    def for_run(self, extended: bool, ratio: float | None = None) -> dict:
        """The ``budget`` parameter of one run: its images and points (past 1.0 only when ``extended``)."""
        images = self.images
        if ratio is not None and any(math.isclose(ratio, r) for r in self.short_ratios):
            images = int(round(self.images * self.short_fraction))
        points = [p for p in sorted(self.points) if extended or p <= 1.0]
        return {"images": images, "points": points}


@dataclass
class RunBudget(Settings):
    """One run's budget: ``images`` (the record's budget) and ``points`` (fractions of it to evaluate at)."""

    images: int = BudgetConfig.images
    points: list = field(default_factory=lambda: [1.0])

    @property
    def extended(self) -> bool:
        """True when the run goes on past its budget (and then scores the test trials at each point)."""
        return max(self.points) > 1.0

    def chunks(self, batch_size: int, epoch_images: int) -> tuple[int, int, list[int]]:
        """``(batches per chunk, chunks in the run, chunk index of each point)``.

        The first point is split into as few chunks as keep each within one pass over the
        ``epoch_images`` training images; chunks are rounded to whole batches (exact when the first
        point is a multiple of the batch size and fits in one pass, as in the shipped profiles).
        """
        first = self.images * min(self.points)
        if first < batch_size:
            raise ValueError(f"budget of {self.images} images with points {self.points}: the first point "
                             f"({first:g} images) is less than one batch of {batch_size}")
        per_point = math.ceil(first / (epoch_images - epoch_images % batch_size or batch_size))
        batches = max(1, round(first / per_point / batch_size))
        at = [p / min(self.points) for p in self.points]
        if not all(math.isclose(a, round(a)) for a in at):
            raise ValueError(f"budget points {self.points} must be whole multiples of the first point")
        return batches, int(round(max(at))) * per_point, [int(round(a)) * per_point for a in at]

    def train_config(self, config: TrainConfig, epoch_images: int) -> tuple[TrainConfig, dict[int, float]]:
        """``config`` cut into the budget's chunks, and ``{chunk: point}`` where to evaluate."""
        batches, chunks, at = self.chunks(config.batch_size, epoch_images)
        return (dataclasses.replace(config, epochs=chunks, max_batches_per_epoch=batches),
                dict(zip(at, self.points)))


class AlongTheWay:
    """The callback :func:`~ocular_utils.training.loop.fit` calls at each point of a budget.

    It scores the best-so-far model (chosen on validation among the points) on the test trials
    with ``test`` (at every point of a run that goes past its budget, else at half the budget and
    at the budget), stores the scores under ``<run_dir>/along/``, and keeps the state at
    the budget itself (point 1.0) in ``<run_dir>/checkpoints/budget.pt``, so the run's model is
    the one at its budget even when it goes on past it (and after a resume).
    """

    def __init__(self, run_dir: str | Path, budget: RunBudget, points: dict[int, float], test=None):
        self.run_dir, self.budget, self.points, self.test = Path(run_dir), budget, points, test
        self.budget_path = self.run_dir / "checkpoints" / "budget.pt"

    def __call__(self, model: torch.nn.Module, row: dict, best_state) -> None:
        """Add the point's numbers to the epoch ``row`` (kept in the training history)."""
        point = self.points.get(row["epoch"])
        if point is None:
            return
        best_is_current = row["best_epoch"] == row["epoch"]
        saved = None if best_is_current else {k: v.detach().clone() for k, v in model.state_dict().items()}
        if not best_is_current:
            model.load_state_dict(best_state())
        try:
            row.update({"point": point, "budget_images": int(round(point * self.budget.images)),
                        "selected_val_eer": row["best_val_eer"]})
            if self.test is not None and (self.budget.extended or point >= 0.5):
                evaluation = self.test(model)
                row["test_eer"] = evaluation.report["eer"]
                save_scores(evaluation, self.run_dir / "along", name=f"scores-{row['budget_images']}.npz")
            if math.isclose(point, 1.0):
                atomic_torch_save({"model": model.state_dict(), "epoch": row["best_epoch"]}, self.budget_path)
        finally:
            if saved is not None:
                model.load_state_dict(saved)

    def restore_budget_model(self, model: torch.nn.Module, device) -> int:
        """Load the model at the budget into ``model`` (in place); return the chunk it was selected at."""
        saved = load_state(self.budget_path, map_location=device)
        model.load_state_dict(saved["model"])
        return int(saved["epoch"])


def along_the_way(history: pd.DataFrame) -> pd.DataFrame:
    """The rows of a training history that are budget points: images, selected validation EER, test EER."""
    if history.empty or "point" not in history:
        return pd.DataFrame(columns=["point", "budget_images", "selected_val_eer", "test_eer"])
    rows = history.dropna(subset=["point"])
    columns = [c for c in ("point", "budget_images", "selected_val_eer", "test_eer") if c in rows]
    return rows[columns].reset_index(drop=True)


def convergence(run_dir: str | Path, images: int, replicates: int, seed: int = 0) -> dict | None:
    """Whether the run's model at its budget ``images`` is at a converged budget, from its test scores along the way.

    With scores at twice the budget, the rule (:func:`ocular_utils.verification.paired.is_converged`)
    is applied to the paired change from the budget to twice it. Otherwise to the change from half
    the budget to the budget: converged at half the budget implies the budget itself is enough.
    ``None`` when neither pair of points was scored.
    """
    along = Path(run_dir) / "along"
    for low, high in ((images, 2 * images), (images // 2, images)):
        at, doubled = along / f"scores-{low}.npz", along / f"scores-{high}.npz"
        if at.is_file() and doubled.is_file():
            a, b = load_trial_scores(doubled), load_trial_scores(at)
            change = paired_difference(a["scores"], b["scores"], a["genuine"], a["subjects"], "eer", replicates, seed)
            return {"images": low, "doubled_to": high, "change": change.difference, "ci_low": change.ci_low,
                    "ci_high": change.ci_high, "half_width": change.half_width, "converged": is_converged(change)}
    return None
