"""Named study profiles (YAML): data, base training, pruning grid, students and KD, latency settings."""
from __future__ import annotations

from pathlib import Path

import yaml

from . import distill, pruning, structured
from .latency import RUNTIMES
from .models import CLASSIFIER_ATTRIBUTE
from .pipeline import data_settings
from .training import TrainConfig

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
SECTIONS = {"name", "description", "synthetic", "threads", "jobs", "device", "seed", "replicates", "data", "base",
            "pruning", "distillation", "latency"}


def available_profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yml"))


def profile_path(name_or_path: str | Path) -> Path:
    """The YAML file of a shipped profile name, or the given path."""
    path = Path(name_or_path)
    if path.suffix in (".yml", ".yaml"):
        if not path.is_file():
            raise FileNotFoundError(f"profile file {path} does not exist")
        return path
    candidate = PROFILE_DIR / f"{name_or_path}.yml"
    if not candidate.is_file():
        raise ValueError(f"unknown profile {name_or_path!r}; shipped profiles: {available_profiles()} "
                         "(or give a path to a .yml file)")
    return candidate


def _check_keys(section: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ValueError(f"profile section {where!r} has unknown keys {unknown}; allowed: {sorted(allowed)}")


def load_profile(name_or_path: str | Path) -> dict:
    """Read and validate a profile; raises naming the first bad entry."""
    path = profile_path(name_or_path)
    profile = yaml.safe_load(path.read_text()) or {}
    _check_keys(profile, SECTIONS, "top level")
    for required in ("name", "data", "base"):
        if required not in profile:
            raise ValueError(f"profile {path} lacks the {required!r} section")
    data_settings(profile["data"])
    threads = profile.get("threads", 1)
    by_kind = isinstance(threads, dict) and all(isinstance(v, int) for v in threads.values())
    if not (isinstance(threads, int) or by_kind):
        raise ValueError(f"threads must be a number or a mapping kind -> number (got {threads!r})")
    base = profile["base"]
    _check_keys(base, {"backbone", "embedding_dim", "head", "pretrained", "train"}, "base")
    if base.get("backbone", "resnet50") not in CLASSIFIER_ATTRIBUTE:
        raise ValueError(f"base.backbone {base['backbone']!r} is not one of {sorted(CLASSIFIER_ATTRIBUTE)}")
    TrainConfig.from_dict(base.get("train"))
    grid = profile.setdefault("pruning", {})
    _check_keys(grid, {"methods", "structured", "compressions", "round_to", "finetune"}, "pruning")
    for method in grid.get("methods", []):
        if method not in pruning.METHODS:
            raise ValueError(f"pruning.methods: unknown method {method!r}; expected some of {list(pruning.METHODS)}")
    for method in grid.get("structured", []):
        if method not in structured.STRUCTURED_METHODS:
            raise ValueError(f"pruning.structured: unknown method {method!r}; expected some of "
                             f"{list(structured.STRUCTURED_METHODS)}")
    for ratio in grid.get("compressions", []):
        if not isinstance(ratio, (int, float)) or ratio < 1:
            raise ValueError(f"pruning.compressions: {ratio!r} is not a ratio >= 1")
    TrainConfig.from_dict(grid.get("finetune"))
    kd = profile.setdefault("distillation", {})
    _check_keys(kd, {"students", "losses", "temperature", "alpha", "embedding_weight", "train"}, "distillation")
    for student in kd.get("students", []):
        if student not in CLASSIFIER_ATTRIBUTE:
            raise ValueError(f"distillation.students: unknown network {student!r}; expected some of "
                             f"{sorted(CLASSIFIER_ATTRIBUTE)}")
    for loss in kd.get("losses", []):
        if loss not in distill.LOSSES:
            raise ValueError(f"distillation.losses: unknown loss {loss!r}; expected some of {distill.LOSSES}")
    TrainConfig.from_dict(kd.get("train"))
    lat = profile.setdefault("latency", {})
    _check_keys(lat, {"input_sizes", "runtimes", "detail_compression", "detail_methods", "threads", "repeats",
                      "warmup", "max_seconds", "coreml"}, "latency")
    for runtime in lat.get("runtimes", []):
        if runtime not in RUNTIMES:
            raise ValueError(f"latency.runtimes: unknown runtime {runtime!r}; expected some of {RUNTIMES}")
    profile["source"] = str(path)
    return profile
