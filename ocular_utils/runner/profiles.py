"""Named study profiles (YAML), read into one typed :class:`Profile`.

Each section is a dataclass beside the code that uses it and holds the one copy of its defaults:
``data`` (:class:`~ocular_utils.data.prepare.DataConfig`), ``base``
(:class:`~ocular_utils.training.recipes.BaseConfig`), ``pruning``
(:class:`~ocular_utils.compression.registry.PruningConfig`), ``distillation``
(:class:`~ocular_utils.compression.distillation.DistillationConfig`), ``budget`` (the matched
training budget of every compressed model and student:
:class:`~ocular_utils.training.budget.BudgetConfig`), ``latency``
(:class:`~ocular_utils.deployment.latency.LatencyConfig`), ``quantization`` (int8 and the combined
routes: :class:`~ocular_utils.deployment.quantize.QuantizationConfig`). A profile file writes down only what
differs from the defaults; unknown keys are rejected with the list of known ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..compression.distillation import DistillationConfig
from ..compression.registry import PruningConfig
from ..core.config import Settings
from ..core.environment import RunSettings
from ..core.paths import PACKAGE_DIR
from ..data.prepare import DataConfig
from ..deployment.latency import LatencyConfig
from ..deployment.quantize import QuantizationConfig
from ..training.budget import BudgetConfig
from ..training.recipes import BaseConfig

PROFILE_DIR = PACKAGE_DIR / "profiles"


@dataclass
class Profile(Settings):
    """A whole study: run settings, scheduling, and the sections of the grid."""

    name: str = "default"
    description: str = ""
    synthetic: bool = False
    threads: int | dict = 1  # per notebook: a number, or {kind: n, default: n}
    jobs: int = 1  # notebooks at once (local engine)
    device: str = RunSettings.device
    seed: int = RunSettings.seed
    replicates: int = RunSettings.replicates
    precision: str = RunSettings.precision  # of training steps: auto | fp32 | bf16
    data: DataConfig = field(default_factory=DataConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)  # matched for pruning and students
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)  # int8 and combined routes
    source: str | None = None  # the YAML file it was read from

    def __post_init__(self):
        by_kind = isinstance(self.threads, dict) and all(isinstance(v, int) for v in self.threads.values())
        if isinstance(self.threads, bool) or not (isinstance(self.threads, int) or by_kind):
            raise ValueError(f"threads must be a number or a mapping kind -> number (got {self.threads!r})")
        counts = self.threads.values() if by_kind else [self.threads]
        if min(counts) < 1 or self.jobs < 1:
            raise ValueError(f"threads and jobs must be at least 1 (got threads {self.threads!r}, jobs {self.jobs!r})")

    def threads_for(self, kind: str) -> int:
        """Torch threads of one notebook kind."""
        if isinstance(self.threads, dict):
            return int(self.threads.get(kind, self.threads.get("default", 1)))
        return int(self.threads)

    def run_settings(self, kind: str) -> dict:
        """The run settings (seed, threads, device, replicates, precision) a notebook of ``kind`` receives."""
        return RunSettings(self.seed, self.threads_for(kind), self.device, self.replicates, self.precision).to_dict()


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


def read_profile_file(name_or_path: str | Path) -> dict:
    """The profile's YAML as written (only what differs from the defaults); a syntax error names the line."""
    path = profile_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"profile {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(values, dict):
        raise ValueError(f"profile {path} must be a mapping of settings (got {type(values).__name__})")
    return values


def load_profile(name_or_path: str | Path) -> Profile:
    """Read and validate a profile; raises naming the first bad entry."""
    path = profile_path(name_or_path)
    values = read_profile_file(path)
    if "name" not in values:
        raise ValueError(f"profile {path} lacks a name")
    return Profile.from_dict(values | {"source": str(path)}, "profile")
