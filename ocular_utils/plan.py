"""Turn a profile into the study's grid: one unit per notebook execution, in dependency order.

data -> base -> (pruning cells, distillation cells) -> latency -> chapters. Each unit's key hashes
its parameters (upstream run folders included) and the code version, so changing anything
upstream re-runs exactly what depends on it, and nothing else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .results import code_version, is_complete, run_key

NOTEBOOKS = {
    "data": "data.ipynb",
    "base": "train_base.ipynb",
    "prune": "prune.ipynb",
    "distill": "distill.ipynb",
    "latency": "latency.ipynb",
    "pruning_results": "pruning_results.ipynb",
    "distillation_results": "distillation_results.ipynb",
    "comparison": "comparison.ipynb",
}


@dataclass
class Unit:
    """One papermill execution of a notebook with fixed parameters."""

    name: str
    kind: str
    notebook: Path
    params: dict
    deps: list[str] = field(default_factory=list)
    chapter: str | None = None
    key: str = ""
    run_dir: Path = Path()
    gpus: float = 0.0
    exclusive: bool = False

    @property
    def output(self) -> Path:
        """Where the executed notebook is written."""
        return self.run_dir / "notebook.ipynb"

    def complete(self, root: Path) -> bool:
        """True if this unit's record exists (the unit is done)."""
        return is_complete(root / self.run_dir)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-")


class Planner:
    """Builds the units of one profile under ``results/<profile>``."""

    def __init__(self, profile: dict, project_root: Path, results: str = "results", threads: int | None = None):
        self.profile = profile
        self.root = project_root
        self.base = Path(results) / profile["name"]
        self.threads_override = threads
        self.units: dict[str, Unit] = {}
        self.notebook_dir = project_root / "notebooks"
        self.versions: dict[str, str] = {}

    def _version(self, kind: str) -> str:
        notebook = self.notebook_dir / NOTEBOOKS[kind]
        if kind not in self.versions:
            self.versions[kind] = code_version([notebook])
        return self.versions[kind]

    def add(self, name: str, kind: str, params: dict, deps=(), chapter: str | None = None,
            notebook_kind: str | None = None) -> Unit:
        """Register a unit; its key and run folder follow from its parameters."""
        if name in self.units:
            raise ValueError(f"two grid cells are both named {name!r} (duplicate entries in the profile?)")
        notebook_kind = notebook_kind or kind
        key = run_key(kind, params, self._version(notebook_kind))
        run_dir = self.base / "runs" / kind / f"{_slug(name.split('/', 1)[-1])}-{key}"
        if kind != "chapter":  # chapters only read records; the others write theirs into run_dir
            params = params | {"run_dir": str(run_dir)}
        unit = Unit(name, kind, self.notebook_dir / NOTEBOOKS[notebook_kind], params,
                    list(deps), chapter, key, run_dir,
                    gpus=1.0 if kind in ("base", "prune", "distill") and self.profile.get("device", "auto") != "cpu"
                    else 0.0,
                    exclusive=kind == "latency")  # timings must not share the CPU with another notebook
        self.units[name] = unit
        return unit

    def threads(self, kind: str) -> int:
        """Torch threads of a unit: the profile's ``threads`` (a number, or ``{kind: n, default: n}``)."""
        if self.threads_override is not None:
            return self.threads_override
        setting = self.profile.get("threads", 1)
        if isinstance(setting, dict):
            return int(setting.get(kind, setting.get("default", 1)))
        return int(setting)

    def common(self, kind: str) -> dict:
        """Parameters every training/evaluation notebook takes."""
        return {"seed": self.profile.get("seed", 0), "threads": self.threads(kind),
                "device": self.profile.get("device", "auto"), "replicates": self.profile.get("replicates", 200)}

    def data(self) -> dict:
        """The ``data`` parameter: the profile's data section plus the image cache folder."""
        return {"cache_dir": str(self.base / "cache")} | dict(self.profile["data"])

    def build(self) -> dict[str, Unit]:
        """All units of the profile, keyed by name, in a valid execution order."""
        p, data = self.profile, self.data()
        base_cfg = p["base"]
        self.add("data", "data", {"data": data, "backbone": base_cfg.get("backbone", "resnet50"),
                                  "batch_size": base_cfg.get("train", {}).get("batch_size", 32),
                                  "threads": self.threads("data"), "device": p.get("device", "auto")}, chapter="data")
        base = self.add("base", "base", {"data": data, **{k: v for k, v in base_cfg.items()}, **self.common("base")},
                        deps=["data"], chapter="train_base")
        grid = p.get("pruning", {})
        prune_units = []
        for method in list(grid.get("methods", [])) + list(grid.get("structured", [])):
            for ratio in grid.get("compressions", []):
                prune_units.append(self.add(
                    f"prune/{method}-{ratio:g}x", "prune",
                    {"data": data, "base_dir": str(base.run_dir), "method": method, "compression": ratio,
                     "finetune": grid.get("finetune", {}), "round_to": grid.get("round_to"), **self.common("prune")},
                    deps=["base"]))
        kd = p.get("distillation", {})
        kd_units = []
        for student in kd.get("students", []):
            for loss in kd.get("losses", []):
                kd_units.append(self.add(
                    f"distill/{student}-{loss}", "distill",
                    {"data": data, "teacher_dir": str(base.run_dir), "student": student, "loss": loss,
                     "temperature": kd.get("temperature", 4.0), "alpha": kd.get("alpha", 0.5),
                     "embedding_weight": kd.get("embedding_weight", 1.0), "train": kd.get("train", {}),
                     **self.common("distill")},
                    deps=["base"]))
        model_runs = [str(u.run_dir) for u in [base, *prune_units, *kd_units]]
        model_deps = ["base"] + [u.name for u in prune_units + kd_units]
        lat = dict(p.get("latency", {}))
        size = lat.get("input_sizes", [data["image_size"]])[0]
        latency = self.add("latency", "latency", {"runs": model_runs, **lat}, deps=model_deps, chapter="latency")
        self.add("pruning_results", "chapter", {"runs": [str(base.run_dir)] + [str(u.run_dir) for u in prune_units]},
                 deps=["base"] + [u.name for u in prune_units], chapter="pruning_results",
                 notebook_kind="pruning_results")
        self.add("distillation_results", "chapter", {"runs": [str(base.run_dir)] + [str(u.run_dir) for u in kd_units]},
                 deps=["base"] + [u.name for u in kd_units], chapter="distillation_results",
                 notebook_kind="distillation_results")
        self.add("comparison", "chapter", {"runs": model_runs, "latency_dir": str(latency.run_dir),
                                           "input_size": f"{size[0]}x{size[1]}"},
                 deps=model_deps + ["latency"], chapter="comparison", notebook_kind="comparison")
        return self.units
