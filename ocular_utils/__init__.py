"""Helpers for the reproducible study of compact CNNs for on-device ocular verification.

Subpackages follow the data flow, one concern each, and each module has one job:

- ``core.atomic``: atomic file writes and weights-only checkpoint loading
- ``core.registry``: ``Registry``, the one name -> entry table behind methods and routes (clear errors)
- ``core.environment``: device choice, seeds, thread counts, run settings, the machine's description
- ``core.paths``: the project folder and paths relative to it
- ``core.config``: typed settings (strict dict -> dataclass, plain dict back)
- ``core.study``: study-wide constants of the comparison (the paper's method, alpha, fair partners)
- ``core.records``: the run store: the typed ``Record`` of a run, run keys, done markers, loading records
- ``core.code_version``: the source a unit's results depend on (its notebook, the modules it imports) and its hash
- ``data.synthetic``: the embedded synthetic periocular data set in VISOB's layout
- ``data.visob``, ``data.ufpr``, ``data.generic``: loaders of the real layouts
- ``data.schema``: the common image index and the errors bad input raises
- ``data.attributes``: subject attributes (groups): VISOB's gender.json, UFPR's protocol columns, a CSV
- ``data.protocols``: subject-independent splits and verification trials
- ``data.images``: decoded image store, training batches, augmentation
- ``data.config``: ``DataConfig``, the data section of a profile
- ``data.prepare``: settings -> split, decoded images and test trials (``StudyData``)
- ``models.networks``: backbone + embedding + training-only head; the deployed network
- ``models.counting``: parameters, nonzeros, compression ratio, MACs
- ``models.files``: model files (dense, sparse, resized) and the reload check
- ``training.loop``: ``TrainConfig`` and the training loop in pieces (epoch, selection, checkpoints)
- ``training.distributed``: data-parallel training under torchrun
- ``training.budget``: matched budgets in training images; where the trunk forks into decay branches
- ``training.along``: finished models along the way (warmup-stable-decay branches), scored; improvement
- ``training.recipes``: ``BaseConfig``; base training, training to a budget, fine-tuning
- ``compression.registry``: the method registry (``METHODS``, ``register``, ``compress``), ``PruningConfig``
- ``compression.unstructured``: ShrinkBench's five unstructured methods as torch prune masks
- ``compression.channels``: channel pruning with Torch-Pruning
- ``compression.distillation``: KD losses, ``DistillationConfig``, student training
- ``compression.routes``: the compression routes that end in int8 (``ROUTES``, ``register_route``)
- ``verification.scoring``: embeddings, trial scores, score files
- ``verification.metrics``: EER, TAR@FAR, ROC/DET, AUC, subject bootstrap intervals
- ``verification.resampling``: the subject bootstrap, both subjects of every trial resampled
- ``verification.paired``: paired differences on the same trials, at several looks; Holm, IUT, non-inferiority
- ``verification.calibration``: simulated data sets that check the paired test's level and power
- ``verification.conditions``: capture conditions of a trial's two images (codes in score files) and the trial
  subsets of conditions and subject groups
- ``verification.subsets``: EER by capture condition and subject group under one subject draw; paired changes
  and group gaps
- ``verification.multiplicity``: max-T family-wise p-values and simultaneous intervals over many statistics
  read from one set of draws
- ``verification.pair_curves``: exact EER and TAR of one score set under many subject draws at once
- ``deployment.export``: ONNX, ExecuTorch and Core ML exports, checked against eager
- ``deployment.latency``: ``LatencyConfig`` and the batch-1 timing harness per runtime
- ``deployment.quantize``: ``QuantizationConfig``; int8 for ExecuTorch (PT2E, XNNPACK) and ONNX Runtime (QDQ)
- ``deployment.artifacts``: a route's fp32 and int8 ``.pte`` and ``.onnx`` files at each input size
- ``deployment.runtime_scoring``: int8 artifacts scored through ExecuTorch and ONNX Runtime, paired with the parent
- ``deployment.route_timing``: batch-1 latency of the quantization runs' artifacts and their parents
- ``deployment.route_record``: a quantization run's record fields and the models it descends from
- ``deployment.kit``: the phone kit (``ocular-study export``): artifacts and their manifest
- ``deployment.devices``: on-device latency measurements from CSV files
- ``report.results``: ``load_results``: the records of the runs, the typed model tables, the latency table
- ``report.tables``: the chapters' tables built from them
- ``report.display``: the one formatting layer of every chapter table (great_tables)
- ``report.comparison``: the comparisons behind the verdicts, each at B and 2B
- ``report.verdicts``: the verdict rules (settled comparisons, IUT, Holm, non-inferiority)
- ``report.plots``: every figure of the book (style applied by ``apply_style``)
- ``report.timing``: where the time goes (seconds per phase, fixed overhead, throughput)
- ``report.phone``: every route on the phone axes, the best route under a budget, the verdict
- ``report.who_pays``: who pays for compression: condition and group EER changes against parent and base
- ``report.findings``: each chapter's opening numbers, glued (myst_nb) for its prose and the intro's headline table
- ``runner.profiles``: ``Profile`` and the shipped YAML profiles
- ``runner.plan``: a profile's grid of notebook executions
- ``runner.preflight``: the plan checked against its data before anything runs
- ``runner.lock``: one run per results folder (a lock file naming its holder)
- ``runner.pricing``: a plan's training images per group of units and the hours they take
- ``runner.dry_run``: what ``--dry-run`` and ``status`` print: units, price, folder size, the plan's problems
- ``runner.cleanup``: the results folder's size, run folders no unit owns, cleaning
- ``runner.scheduler``: executes units with papermill, locally or on Ray
- ``runner.failed_units``: a run's failed and blocked units (``failures.json``), their messages, the exit status
- ``runner.session``: the start and finish of a run notebook
- ``runner.book``: assembles and builds the Jupyter Book
- ``runner.cli``: the ``ocular-study`` command

The names below are the stable public API: they stay importable from ``ocular_utils`` wherever
their modules live. They load on first use, so ``import ocular_utils`` is cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    # data
    "load_dataset": "data", "prepare_data": "data.prepare", "DataConfig": "data.config",
    "generate_visob_like": "data.synthetic", "SyntheticConfig": "data.synthetic",
    # models
    "build_model": "models.networks", "deployed_network": "models.networks",
    "parameter_counts": "models.counting", "compression_ratio": "models.counting", "model_cost": "models.counting",
    "save_model": "models.files", "load_model": "models.files",
    # training
    "fit": "training.loop", "TrainConfig": "training.loop", "train_base_model": "training.recipes",
    "fit_to_budget": "training.recipes", "BaseConfig": "training.recipes",
    # compression
    "METHODS": "compression.registry", "CompressionMethod": "compression.registry", "register": "compression.registry",
    "compress": "compression.registry", "PruningConfig": "compression.registry",
    "prune": "compression.unstructured", "register_unstructured": "compression.unstructured",
    "channel_prune": "compression.channels", "kd_loss": "compression.distillation",
    "distillation_loss": "compression.distillation", "train_student": "compression.distillation",
    "DistillationConfig": "compression.distillation",
    # verification
    "eer": "verification.metrics", "tar_at_far": "verification.metrics", "roc": "verification.metrics",
    "det": "verification.metrics", "auc": "verification.metrics", "verification_report": "verification.metrics",
    "evaluate": "verification.scoring", "paired_difference": "verification.paired", "holm": "verification.paired",
    # deployment
    "export_onnx": "deployment.export", "export_executorch": "deployment.export",
    "time_callable": "deployment.latency", "LatencyConfig": "deployment.latency",
    # report
    "Record": "core.records", "load_records": "core.records", "load_results": "report.results",
    # runner
    "load_profile": "runner.profiles", "Profile": "runner.profiles", "start_run": "runner.session",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ocular_utils' has no attribute {name!r}")
    module = importlib.import_module(f".{_PUBLIC[name]}", __name__)
    if name == "METHODS":
        importlib.import_module(".compression", __name__)  # registers the built-in methods
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
