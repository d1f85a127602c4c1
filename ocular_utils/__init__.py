"""Helpers for the reproducible study of compact CNNs for on-device ocular verification.

Subpackages follow the data flow, one concern each:

- ``core``: atomic files, the execution environment (device, seeds, threads), project paths, typed settings
- ``data``: the synthetic default, VISOB / UFPR-Periocular / generic loaders, protocols, images, preparation
- ``models``: verification networks, parameter and MAC counts, model files
- ``training``: the training loop in pieces, data-parallel helpers, the base and fine-tuning recipes
- ``compression``: the method registry, unstructured masks, channel pruning, knowledge distillation
- ``verification``: trial scores and the metrics on them (EER, TAR@FAR, ROC/DET, bootstrap)
- ``deployment``: exports for phone runtimes, latency, on-device measurements
- ``report``: result records, tables, comparisons and every figure
- ``runner``: profiles, the grid plan, the scheduler, notebook sessions, the CLI and the book

The names below are the stable public API: they stay importable from ``ocular_utils`` wherever
their modules live. They load on first use, so ``import ocular_utils`` is cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    # data
    "load_dataset": "data", "prepare_data": "data.prepare", "DataConfig": "data.prepare",
    "generate_visob_like": "data.synthetic", "SyntheticConfig": "data.synthetic",
    # models
    "build_model": "models.networks", "deployed_network": "models.networks",
    "parameter_counts": "models.counting", "compression_ratio": "models.counting", "model_cost": "models.counting",
    "save_model": "models.files", "load_model": "models.files",
    # training
    "fit": "training.loop", "TrainConfig": "training.loop", "train_base_model": "training.recipes",
    "fine_tune": "training.recipes", "BaseConfig": "training.recipes",
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
    "evaluate": "verification.scoring",
    # deployment
    "export_onnx": "deployment.export", "export_executorch": "deployment.export",
    "time_callable": "deployment.latency", "LatencyConfig": "deployment.latency",
    # report
    "Record": "report.records", "load_records": "report.records", "load_results": "report.tables",
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
