"""One notebook run from start to finish: what every run notebook calls first and last.

:func:`start_run` reads the notebook's parameters, fixes threads, seeds and device, prepares the
data and shows the synthetic-data banner; :meth:`Run.finish` saves the model and the test scores,
checks that the saved file reloads, counts the model's cost and writes the typed record. In
between, :meth:`Run.timed` keeps a breakdown of where the time goes.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..compression.distillation import DistillationConfig
from ..compression.registry import PruningConfig
from ..compression.unstructured import is_pruned, make_permanent
from ..core import paths
from ..core.environment import (
    RUN_SETTINGS,
    RunSettings,
    process_age_seconds,
    resolve_precision,
    seed_everything,
    select_device,
    set_threads,
)
from ..core.paths import notebook_path, resolve
from ..core.records import Record, read_record, write_record
from ..data.images import iterate_images
from ..data.prepare import StudyData, prepare_data
from ..deployment.latency import LatencyConfig
from ..deployment.quantize import QuantizationConfig
from ..models.counting import model_cost, parameter_counts
from ..models.files import load_model, save_model, verify_reload
from ..models.networks import deployed_network
from ..report.tables import synthetic_banner
from ..training.along import along_the_way, improvement, point_scores
from ..training.budget import RunBudget
from ..training.loop import TrainResult
from ..training.recipes import BaseConfig
from ..verification.scoring import Evaluation, evaluate_saved_scores, save_scores

# The parameters every run notebook declares besides its own (its parameters cell is the one place they are
# written: :func:`declared_parameters`), and the settings section each ``<name> = {...}`` parameter is read into.
RUN_PARAMETERS = RUN_SETTINGS + ("run_dir",)
SECTIONS = {"base": BaseConfig, "pruning": PruningConfig, "distillation": DistillationConfig,
            "latency": LatencyConfig, "budget": RunBudget, "quantization": QuantizationConfig}


@dataclass
class Run:
    """A notebook run in progress: its parameters, settings sections (those it takes), device, data and timings."""

    kind: str
    params: dict
    run_dir: Path
    settings: RunSettings
    device: torch.device
    base: BaseConfig | None = None
    pruning: PruningConfig | None = None
    distillation: DistillationConfig | None = None
    latency: LatencyConfig | None = None
    quantization: QuantizationConfig | None = None
    budget: RunBudget | None = None
    data: StudyData | None = None
    timings: dict = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, phase: str):
        """Add the block's wall time to ``timings[phase]`` (seconds)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started

    @property
    def precision(self) -> str:
        """The precision this run's training steps take on its device: ``fp32`` or ``bf16``."""
        return resolve_precision(self.settings.precision, self.device)

    @property
    def synthetic(self) -> bool:
        """True when the run's data are the generated default."""
        return bool(self.data is not None and self.data.synthetic)

    def load_model(self, run_dir: str | Path):
        """A saved model (e.g. the base) on this run's device, in eval mode."""
        return load_model(resolve(run_dir), device=self.device)

    def evaluation_at_budget(self, result: TrainResult) -> Evaluation:
        """The test evaluation (with intervals) of the finished model at the budget, from the scores saved when
        that model was made along the way: its test images are embedded once."""
        along = along_the_way(result.history)
        images = along.loc[along["point"] == 1.0, "budget_images"]
        if images.empty:
            raise RuntimeError(f"{self.run_dir}: the training history has no point at the budget")
        return evaluate_saved_scores(point_scores(self.run_dir, images.iloc[0]), self.data, self.settings.replicates)

    def test_images(self, count: int = 16) -> torch.Tensor:
        """The first ``count`` test images as one batch on the run's device (for reload checks)."""
        frame = self.data.split.test.head(count)
        return next(iterate_images(self.data.store, frame, count)).to(self.device)

    def finish(self, model, evaluation: Evaluation, result: TrainResult, *, family: str,
               reference_params: int | None = None, cost: dict | None = None, resized: bool = False,
               sparse: bool = False, gzip_size: bool = False, extra_metrics: dict | None = None,
               details: dict | None = None, **identity) -> Record:
        """Save model and scores, check the reload, count the cost, and write the run's record.

        Pruning masks are folded into the weights first (``model`` changes in place). ``identity``
        holds the record's typed fields (``backbone``, ``method``, ``requested_compression``,
        ``student``, ``kd_loss``). ``cost`` defaults to the cost of the deployed network now;
        ``reference_params`` (the base's parameters) gives the achieved compression (1 for the base).
        """
        if is_pruned(model):
            make_permanent(model)
        with self.timed("save"):
            files = save_model(model, self.run_dir, resized=resized, sparse=sparse, gzip_size=gzip_size,
                               identities=self.data.split.identity_hash)
            reload = verify_reload(model, self.run_dir, self.test_images())
            save_scores(evaluation, self.run_dir)
        cost = cost or model_cost(deployed_network(model), self.data.image_size)
        reference = reference_params or cost["params"]
        budget = self.budget_details(result)
        return self.write_record(
            family=family, achieved_compression=reference / cost["nonzero_params"],
            training_images=budget.pop("images"),
            still_improving=budget["improvement"]["still_improving"] if budget["improvement"] else None,
            metrics=evaluation.report | budget.pop("metrics") | (extra_metrics or {}),
            model=cost | files | {"reference_params": reference},
            details={"history": result.history.to_dict("records"), "reload": reload,
                     "subsets": evaluation.subsets.to_dict("records"),
                     "split": self.data.split.sizes().to_dict("records")} | budget | (details or {}), **identity)

    def budget_details(self, result: TrainResult) -> dict:
        """The record's budget: images, validation EER at the budget, the points along the way, improvement.

        ``trained_images`` counts every image the run trained on (its trunk and every decay branch).
        """
        if self.budget is None:  # the base: its epochs are its budget
            images = int(result.history["images"].sum()) if len(result.history) else 0
            val = result.best_metric
            return {"images": images, "metrics": {} if val is None else {"validation_eer": val},
                    "along_the_way": [], "improvement": None, "trained_images": images}
        along = along_the_way(result.history)
        at_budget = along[along["point"] == 1.0]
        return {"images": self.budget.images,
                "metrics": {"validation_eer": float(at_budget["val_eer"].iloc[0])} if len(at_budget) else {},
                "along_the_way": along.astype(object).where(along.notna(), None).to_dict("records"),
                "improvement": improvement(self.run_dir, along, self.settings.replicates, self.data.config.seed),
                "trained_images": int(result.history["images"].sum() + (result.history["branch_images"].sum()
                                                                         if "branch_images" in result.history else 0))}

    def write_record(self, synthetic: bool | None = None, **fields) -> Record:
        """Write this run's :class:`Record` (its kind, parameters, seed and timings, plus ``fields``); return it."""
        trains = self.kind in ("base", "prune", "distill")
        record = Record(kind=self.kind, params=self.params, seed=self.settings.seed, timings=self.timings,
                        precision=self.precision if trains else None,
                        synthetic=self.synthetic if synthetic is None else synthetic,
                        **({"role": self.params["role"]} if "role" in self.params else {}) | fields)
        write_record(self.run_dir, record)
        return record


def declared_parameters(kind: str) -> tuple[str, ...]:
    """The names the parameters cell of the notebook of ``kind`` declares
    (:func:`ocular_utils.core.paths.declared_parameters`)."""
    return paths.declared_parameters(notebook_path(kind))


def run_prelude(params: dict, choose_device: Callable[[], torch.device | None] | None = None
                ) -> tuple[RunSettings, torch.device]:
    """The start every run shares, a notebook's or ``ocular-study train``'s: the run settings of ``params`` (a
    missing or None setting takes its default), then torch threads, seeds and the device, in that order.
    ``choose_device`` (e.g. DDP's, which gives each rank its own) picks the device when it returns one."""
    settings = RunSettings.from_dict({k: params[k] for k in RUN_SETTINGS if params.get(k) is not None},
                                     "run settings")
    set_threads(settings.threads)
    seed_everything(settings.seed)
    return settings, (choose_device() if choose_device else None) or select_device(settings.device)


def start_run(kind: str, namespace: dict, prepare: bool = True) -> Run:
    """Begin a run notebook: read its parameters from ``namespace`` (the notebook's ``globals()``).

    Fixes threads, seeds everything and picks the device (in that order), reads each settings
    section, prepares the data (unless ``prepare`` is false) and displays the synthetic-data banner.
    """
    names = declared_parameters(kind)
    lacking = [name for name in RUN_PARAMETERS if name not in names]
    if lacking:
        raise NameError(f"the {kind} notebook's parameters cell lacks the run parameters {lacking}")
    missing = [name for name in names if name not in namespace]
    if missing:
        raise NameError(f"the {kind} notebook's parameters {missing} are not defined where the run starts")
    params = {name: namespace[name] for name in names}
    timings = {"startup": process_age_seconds()}  # the kernel's start and the imports
    settings, device = run_prelude(params)
    sections = {name: cls.from_dict(params[name], name) for name, cls in SECTIONS.items() if name in params}
    run = Run(kind, params, resolve(params["run_dir"]), settings, device, **sections, timings=timings)
    if prepare and "data" in params:
        with run.timed("data"):
            run.data = prepare_data(params["data"])
        from IPython.display import display

        display(synthetic_banner(run.synthetic))
    return run


def reference_params(model_or_run_dir: torch.nn.Module | str | Path) -> int:
    """Parameters of the deployed network of a model, or of the model saved in a run folder (a ratio's base):
    from the run's record when it has one, else by loading the model."""
    if isinstance(model_or_run_dir, torch.nn.Module):
        return parameter_counts(model_or_run_dir)["total"]
    record = read_record(resolve(model_or_run_dir))
    if record is not None and record.get("model", {}).get("params"):
        return int(record["model"]["params"])
    return parameter_counts(load_model(resolve(model_or_run_dir)))["total"]
