"""Check a whole plan against its data before the first unit starts (``ocular-study run`` and ``--dry-run``).

The data set is generated (synthetic) or indexed and split as the data unit will do it, without
decoding; then every setting that depends on it is checked: image files that cannot be images,
batch sizes, the smallest budget point, calibration images, test subjects for the paired tests,
and compression ratios (refused when impossible for the base network, a warning where the
method's models are known to collapse). All problems are reported at once, one line each.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from ..compression.registry import get_method
from ..compression.unstructured import keep_fraction
from ..core.paths import resolve
from ..data.images import unreadable_images
from ..data.prepare import index_data, split_data
from ..models.counting import parameter_counts
from ..models.networks import build_model
from .plan import Unit
from .profiles import Profile

MIN_TEST_SUBJECTS = 3  # a subject bootstrap of a paired test needs at least this many test subjects
FEW_TEST_SUBJECTS = 20  # below this, intervals are wide (a warning)


@dataclass
class Checked:
    """What the check found: problems stop the run; warnings are printed and the run goes on."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_images: int | None = None


def check_plan(profile: Profile, units: dict[str, Unit], generate: bool = True) -> Checked:
    """Check the data and every data-dependent setting of ``units`` (the plan's first round and beyond).

    Synthetic data not generated yet is generated first (the data unit then finds it), unless
    ``generate`` is false (a dry run): then only the settings that need no data are checked.
    """
    checked = Checked()
    check_compressions(profile, checked)
    data = profile.data
    if data.synthetic is not None and not generate and not resolve(data.root).is_dir():
        checked.warnings.append(f"data: the synthetic data set ({data.root}) is not generated yet; the checks "
                                "that need it run when the study starts")
        return checked
    try:
        dataset = index_data(data)
        split = split_data(dataset, data)
    except (ValueError, FileNotFoundError, NotADirectoryError, KeyError) as error:
        checked.problems.append(f"data (root {data.root}): {error}")
        return checked
    bad = unreadable_images(dataset.frame["path"])
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        line = f"data: {len(bad)} files are not readable images ({shown})"
        if data.on_corrupt == "error":
            checked.problems.append(line + "; fix or remove them, or set data.on_corrupt: skip")
        else:
            checked.warnings.append(line + "; they will be skipped (data.on_corrupt: skip)")
    train, subjects = len(split.train), split.test["subject"].nunique()
    checked.train_images = train
    check_batches(profile, units, train, checked)
    if profile.quantization.routes and profile.quantization.calibration_images > train:
        checked.problems.append(f"quantization.calibration_images: {profile.quantization.calibration_images} "
                                f"exceeds the {train} training images; choose at most {train}")
    if subjects < MIN_TEST_SUBJECTS:
        checked.problems.append(f"data: {subjects} test subjects; the paired tests resample subjects and need at "
                                f"least {MIN_TEST_SUBJECTS} (raise data.test_fraction or use more subjects)")
    elif subjects < FEW_TEST_SUBJECTS and not profile.synthetic:
        checked.warnings.append(f"data: only {subjects} test subjects; intervals will be wide")
    return checked


def check_batches(profile: Profile, units: dict[str, Unit], train: int, checked: Checked) -> None:
    """Every training batch fits the training set; every budget point holds at least one batch."""
    sizes = {"base.train.batch_size": profile.base.train.batch_size,
             "pruning.finetune.batch_size": profile.pruning.finetune.batch_size,
             "distillation.train.batch_size": profile.distillation.train.batch_size}
    for name, size in sizes.items():
        if size > train:
            checked.problems.append(f"{name}: {size} exceeds the {train} training images")
    smallest = {}
    for unit in units.values():
        budget = unit.params.get("budget")
        if budget:
            batch = sizes["distillation.train.batch_size" if unit.kind == "distill" else "pruning.finetune.batch_size"]
            images = min(budget["points"]) * budget["images"]
            if images < batch:
                smallest[unit.name] = (images, batch)
    if smallest:
        name, (images, batch) = min(smallest.items(), key=lambda item: item[1][0])
        checked.problems.append(f"budget: the first point of {len(smallest)} runs (e.g. {name}) has {images:g} "
                                f"images, less than one batch of {batch}; raise budget.images or its points")


def check_compressions(profile: Profile, checked: Checked) -> None:
    """Each ratio is possible for the base (ShrinkBench's keep fraction in (0, 1]); warn where models collapse."""
    counts = parameter_counts(build_model(profile.base.backbone, 2, profile.base.embedding_dim))
    for method_name in profile.pruning.methods:
        method = get_method(method_name)
        for ratio in profile.pruning.compressions:
            if method.family == "unstructured pruning":
                try:
                    keep_fraction(counts["total"], counts["prunable"], ratio)
                except ValueError as error:
                    checked.problems.append(f"pruning.compressions: {method_name} at {ratio:g}x: {error}")
                    continue
            if method.meaningful_up_to is not None and ratio > method.meaningful_up_to and \
                    not math.isclose(ratio, method.meaningful_up_to):
                checked.warnings.append(f"pruning.compressions: {method_name} at {ratio:g}x is beyond "
                                        f"{method.meaningful_up_to:g}x, where its models are expected to collapse "
                                        "to chance")


class PlanProblems(Exception):
    """The plan does not fit its data or settings: every problem found, one line each (exit status 2)."""

    def __init__(self, problems: list[str]):
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


def checked_plan(profile, units: dict, generate: bool = True, raise_problems: bool = True) -> Checked:
    """Check the plan against its data before anything runs: warnings printed, problems raised all at once
    (``raise_problems=False``: left in the result, for a dry run that shows the plan first)."""
    checked = check_plan(profile, units, generate=generate)
    for warning in checked.warnings:
        print(f"ocular-study: warning: {warning}", file=sys.stderr, flush=True)
    if checked.problems and raise_problems:
        raise PlanProblems(checked.problems)
    return checked
