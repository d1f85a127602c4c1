"""Finished models along the way: a decay branch off the trunk at each point of a budget.

:class:`AlongTheWay` is the ``on_epoch_end`` callback of
:func:`~ocular_utils.training.loop.fit` for a run trained to a budget
(:func:`ocular_utils.training.recipes.fit_to_budget`). At each fork of the trunk
(:meth:`~ocular_utils.training.budget.RunBudget.chunks`) it saves the trunk's state, trains a
branch whose rate decays linearly from the trunk's rate to zero, and scores that finished model:
validation EER always, the test trials at the points that are reported. The model at the budget
itself (point 1.0) is kept in ``checkpoints/budget.pt``. Then the trunk's state (weights,
optimizer, random state) is restored and the trunk goes on, as if the branch had never run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import torch

from ..core.atomic import atomic_torch_save, load_state
from ..data.images import BatchLoader
from ..verification.paired import compare_scores, still_improving
from ..verification.scoring import load_trial_scores, save_scores
from .budget import Fork, RunBudget
from .loop import TrainingContext, train_one_epoch

POINT_COLUMNS = ["point", "budget_images", "val_eer", "test_eer"]


class _Batches:
    """``count`` batches from ``loader``, reshuffling for every pass it needs."""

    def __init__(self, loader: BatchLoader, count: int):
        self.loader, self.count = loader, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        left = self.count
        while left:
            for batch in self.loader:
                yield batch
                left -= 1
                if not left:
                    return


class _LinearToZero:
    """Per-step rate from the optimizer's current rate down to zero after ``steps`` steps (a decay branch)."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int):
        self.optimizer, self.steps, self.taken = optimizer, steps, 0
        self.start = [group["lr"] for group in optimizer.param_groups]

    def step(self) -> None:
        """After an optimizer step: the next step's rate."""
        self.taken += 1
        for group, start in zip(self.optimizer.param_groups, self.start):
            group["lr"] = start * max(0.0, 1 - self.taken / self.steps)


class AlongTheWay:
    """The callback that turns trunk forks into finished models and scores them (see the module docstring).

    ``validate(model) -> {'eer': ...}`` runs on validation identities; ``test(model) -> Evaluation``
    on the test trials, at every point of a run that goes past its budget and otherwise at half the
    budget and at the budget; scores land in ``<run_dir>/along/scores-<images>.npz``.
    """

    def __init__(self, run_dir: str | Path, budget: RunBudget, forks: dict[int, list[Fork]], validate, test=None):
        self.run_dir, self.budget, self.forks = Path(run_dir), budget, forks
        self.validate, self.test = validate, test
        self.budget_path = self.run_dir / "checkpoints" / "budget.pt"

    def __call__(self, context: TrainingContext, row: dict) -> None:
        """At a fork: per point, branch, score, keep the model at the budget, restore the trunk.

        ``row`` gets ``points`` (one dict per point: ``point``, ``budget_images``, ``val_eer``,
        ``test_eer``), ``branch_images`` and ``branch_seconds``.
        """
        forks = self.forks.get(row["epoch"])
        if not forks:
            return
        started = time.perf_counter()
        row["points"] = [self.finish_point(context, fork) for fork in forks]
        row["branch_images"] = sum(f.branch_batches for f in forks) * context.config.batch_size
        row["branch_seconds"] = time.perf_counter() - started

    def finish_point(self, context: TrainingContext, fork: Fork) -> dict:
        """Branch off the trunk, score the finished model at ``fork``'s point, then restore the trunk."""
        trunk = _snapshot(context)
        try:
            if fork.branch_batches:
                self.decay_branch(context, fork)
            model = context.model
            point = {"point": fork.point, "budget_images": fork.images, "val_eer": self.validate(model)["eer"],
                     "test_eer": None}
            if self.test is not None and (self.budget.extended or fork.point >= 0.5):
                evaluation = self.test(model)
                point["test_eer"] = evaluation.report["eer"]
                save_scores(evaluation, self.run_dir / "along", name=f"scores-{fork.images}.npz")
            if math.isclose(fork.point, 1.0):
                atomic_torch_save({"model": model.state_dict(), "images": fork.images}, self.budget_path)
            return point
        finally:
            _restore(context, trunk)

    def decay_branch(self, context: TrainingContext, fork: Fork) -> None:
        """Train ``fork.branch_batches`` batches from the trunk's state, the rate falling linearly to zero."""
        config = context.config
        loader = BatchLoader(context.store, context.frame, config.batch_size, shuffle=True,
                             augment_images=config.augment, seed=config.seed * 1_000_003 + fork.images)
        steps = fork.branch_batches
        train_one_epoch(context.model, _Batches(loader, steps), context.loss_fn, context.optimizer,
                        _LinearToZero(context.optimizer, steps), context.device, 0, 0)

    def restore_budget_model(self, model: torch.nn.Module, device) -> int:
        """Load the finished model at the budget into ``model`` (in place); return its training images."""
        saved = load_state(self.budget_path, map_location=device)
        model.load_state_dict(saved["model"])
        return int(saved["images"])


def _snapshot(context: TrainingContext) -> dict:
    """The trunk's state: weights, the loss's extra module, optimizer (rates included), torch's random state."""
    def copy(state: dict) -> dict:
        return {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}

    optimizer = context.optimizer.state_dict()
    return {"model": copy(context.model.state_dict()),
            "extra": copy(context.extra_module.state_dict()) if context.extra_module is not None else None,
            "optimizer": {"state": {k: copy(v) for k, v in optimizer["state"].items()},
                          "param_groups": [dict(g) for g in optimizer["param_groups"]]},
            "rng": torch.get_rng_state()}


def _restore(context: TrainingContext, saved: dict) -> None:
    context.model.load_state_dict(saved["model"])
    if saved["extra"] is not None:
        context.extra_module.load_state_dict(saved["extra"])
    context.optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"])


def along_the_way(history: pd.DataFrame) -> pd.DataFrame:
    """The budget points of a training history: images, validation EER and test EER of each finished model."""
    if history.empty or "points" not in history:
        return pd.DataFrame(columns=POINT_COLUMNS)
    points = [p for entry in history["points"] if isinstance(entry, list) for p in entry]
    return pd.DataFrame(points, columns=POINT_COLUMNS).sort_values("budget_images", kind="stable").reset_index(
        drop=True)


def point_scores(run_dir: str | Path, images: int) -> Path:
    """Where a run keeps the test scores of its finished model at ``images`` training images."""
    return Path(run_dir) / "along" / f"scores-{int(images)}.npz"


def improvement(run_dir: str | Path, along: pd.DataFrame, replicates: int, seed: int = 0) -> dict | None:
    """Information only: the paired EER change of a run's finished model from its budget to twice it.

    ``along`` is the run's :func:`along_the_way` table; a run that stops at its budget is looked at
    from half the budget to the budget. ``still_improving`` is True when the change's interval lies
    below zero. ``None`` when neither pair of points was scored on the test trials. Never used to
    choose a model or to extend a run.
    """
    images = dict(zip(along["point"], along["budget_images"])) if len(along) else {}
    for low, high in ((1.0, 2.0), (0.5, 1.0)):
        if low in images and high in images:
            at, doubled = point_scores(run_dir, images[low]), point_scores(run_dir, images[high])
            if at.is_file() and doubled.is_file():
                change = compare_scores(load_trial_scores(doubled), load_trial_scores(at), "eer", replicates, seed)
                return {"images": int(images[low]), "doubled_to": int(images[high]), "change": change.difference,
                        "ci_low": change.ci_low, "ci_high": change.ci_high,
                        "still_improving": still_improving(change)}
    return None
