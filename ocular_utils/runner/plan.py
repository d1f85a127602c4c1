"""Turn a profile into the study's grid: one unit per notebook execution, in dependency order.

data -> base -> (pruning cells, distillation cells) -> latency -> extra seeds -> chapters. Each
unit's key hashes its parameters (upstream run folders included) and the code version, so changing
anything upstream re-runs exactly what depends on it, and nothing else.

Every compressed model and student gets the profile's matched budget (``budget`` section). The
headline runs (every method at the headline ratio, every student) go on past it to twice the
budget; the others are checked for convergence between half the budget and the budget. The plan
is built in rounds: once the headline runs are complete,
the models that get extra seeds (layer_weight, the best unstructured and the best channel method
at the headline ratio, the best student with and without teacher; best by *validation* EER) are
chosen from their records, and the chapters follow those seeds.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..compression.registry import CHANNEL, UNSTRUCTURED, get_method
from ..compression.routes import get_route
from ..report.comparison import PAPER_METHOD, VERDICT_REPLICATES
from ..report.records import code_version, is_complete, read_record, run_key
from .profiles import Profile

NOTEBOOKS = {
    "data": "data.ipynb",
    "base": "train_base.ipynb",
    "prune": "prune.ipynb",
    "distill": "distill.ipynb",
    "latency": "latency.ipynb",
    "pruning_results": "pruning_results.ipynb",
    "distillation_results": "distillation_results.ipynb",
    "comparison": "comparison.ipynb",
    "timing": "timing.ipynb",
    "quantize": "quantize.ipynb",
    "phone": "phone.ipynb",
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

    def __init__(self, profile: Profile, project_root: Path, results: str = "results", threads: int | None = None):
        self.profile = profile
        self.pending: list[str] = []  # what a later round will plan (e.g. extra seeds), for the status line
        self.root = project_root
        self.base = Path(results) / profile.name
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
                    gpus=1.0 if kind in ("base", "prune", "distill") and self.profile.device != "cpu" else 0.0,
                    exclusive=kind == "latency")  # timings must not share the CPU with another notebook
        self.units[name] = unit
        return unit

    def settings(self, kind: str) -> dict:
        """The run settings (seed, threads, device, replicates) of a notebook of ``kind``."""
        settings = self.profile.run_settings(kind)
        if self.threads_override is not None:
            settings["threads"] = self.threads_override
        return settings

    def data(self) -> dict:
        """The ``data`` parameter: the profile's data section, with the image cache under the results folder."""
        data = self.profile.data.to_dict()
        data["cache_dir"] = data["cache_dir"] or str(self.base / "cache")
        return data

    def build(self) -> dict[str, Unit]:
        """All units of the profile that can be planned now, keyed by name, in a valid execution order."""
        p, data = self.profile, self.data()
        measured = {"backbone": p.base.backbone, "train": {"batch_size": p.base.train.batch_size}}  # what data times
        self.add("data", "data", {"data": data, "base": measured, **self.settings("data")}, chapter="data")
        base = self.add("base", "base", {"data": data, "base": p.base.to_dict(), **self.settings("base")},
                        deps=["data"], chapter="train_base")
        prune_units = [self.prune_unit(base, method, ratio) for method in p.pruning.methods
                       for ratio in p.pruning.compressions]
        kd_units = [self.student_unit(base, student, loss) for student in p.distillation.students
                    for loss in p.distillation.losses]
        model_runs = [str(u.run_dir) for u in [base, *prune_units, *kd_units]]
        model_deps = ["base"] + [u.name for u in prune_units + kd_units]
        route_parents, quantized = self.route_units(base, prune_units, kd_units)
        latency = self.add("latency", "latency", {"runs": model_runs, "latency": p.latency.to_dict(),
                                                  "device_csv_dir": "data",
                                                  "quantized_runs": [str(u.run_dir) for u in quantized],
                                                  **self.settings("latency")},
                           deps=model_deps + [u.name for u in quantized], chapter="latency")
        seeds = self.seed_units(base, prune_units, kd_units)
        if seeds is None:
            self.pending.append("extra seeds and chapters: planned once the headline runs are complete")
            return self.units
        prune_units, kd_units = prune_units + seeds[0], kd_units + seeds[1]
        self.add("pruning_results", "chapter", {"runs": [str(base.run_dir)] + [str(u.run_dir) for u in prune_units],
                                                "headline": p.budget.headline_ratio},
                 deps=["base"] + [u.name for u in prune_units], chapter="pruning_results",
                 notebook_kind="pruning_results")
        self.add("distillation_results", "chapter", {"runs": [str(base.run_dir)] + [str(u.run_dir) for u in kd_units],
                                                     "replicates": p.replicates},
                 deps=["base"] + [u.name for u in kd_units], chapter="distillation_results",
                 notebook_kind="distillation_results")
        all_runs = [str(u.run_dir) for u in [base, *prune_units, *kd_units]]
        all_deps = ["base"] + [u.name for u in prune_units + kd_units]
        self.add("comparison", "chapter", {"runs": all_runs, "latency_dir": str(latency.run_dir),
                                           "headline": p.budget.headline_ratio,
                                           "replicates": max(p.replicates, VERDICT_REPLICATES)},
                 deps=all_deps + ["latency"], chapter="comparison", notebook_kind="comparison")
        phone_runs = [str(u.run_dir) for u in [base, *prune_units, *kd_units, *route_parents, *quantized]]
        route_deps = [u.name for u in route_parents + quantized]
        self.add("phone", "chapter", {"runs": phone_runs, "latency_dir": str(latency.run_dir),
                                      "device_csv_dir": "data", "replicates": max(p.replicates, VERDICT_REPLICATES)},
                 deps=all_deps + route_deps + ["latency"], chapter="phone",
                 notebook_kind="phone")
        timed = [str(u.run_dir) for u in route_parents + quantized]
        self.add("timing", "chapter", {"runs": all_runs + timed + [str(self.units["data"].run_dir),
                                                                    str(latency.run_dir)]},
                 deps=all_deps + route_deps + ["data", "latency"], chapter="timing", notebook_kind="timing")
        return self.units

    def prune_unit(self, base: Unit, method: str, ratio: float, seed: int | None = None) -> Unit:
        """One pruning cell (with ``seed``: an extra seed of it, at the budget only)."""
        p = self.profile
        extended = seed is None and math.isclose(ratio, p.budget.headline_ratio)
        settings = self.settings("prune") | ({} if seed is None else {"seed": seed})
        name = f"prune/{method}-{ratio:g}x" + ("" if seed is None else f"-seed{seed}")
        return self.add(name, "prune", {"data": self.data(), "base_dir": str(base.run_dir), "method": method,
                                        "compression": ratio, "pruning": p.pruning.recipe(),
                                        "budget": p.budget.for_run(extended, ratio), **settings}, deps=["base"])

    def student_unit(self, base: Unit, student: str, loss: str, seed: int | None = None) -> Unit:
        """One student (with ``seed``: an extra seed of it, at the budget only)."""
        p = self.profile
        settings = self.settings("distill") | ({} if seed is None else {"seed": seed})
        name = f"distill/{student}-{loss}" + ("" if seed is None else f"-seed{seed}")
        return self.add(name, "distill", {"data": self.data(), "teacher_dir": str(base.run_dir), "student": student,
                                          "loss": loss, "distillation": p.distillation.recipe(),
                                          "budget": p.budget.for_run(seed is None), **settings}, deps=["base"])

    def route_units(self, base: Unit, prune_units: list[Unit], kd_units: list[Unit]) -> tuple[list[Unit], list[Unit]]:
        """``(new parent units, quantization units)`` of the profile's compression routes.

        Each route quantizes each of its parents (:data:`ocular_utils.compression.routes.PARENTS`);
        the student+channel route first channel-prunes and fine-tunes each student (new prune units).
        """
        p, q = self.profile, self.profile.quantization
        headline = [u for u in prune_units if math.isclose(u.params["compression"], p.budget.headline_ratio)]
        students = [u for u in kd_units if u.params["loss"] == q.student_loss]
        needs_pruned_students = any(get_route(name).parents == "student_channel" for name in q.routes)
        pruned_students = [self.student_prune_unit(s) for s in students] if needs_pruned_students else []
        parents_of = {
            "base": [base],
            "channel": [u for u in headline if get_method(u.params["method"]).family == CHANNEL],
            "unstructured": [u for u in headline if u.params["method"] == PAPER_METHOD],
            "student": students,
            "student_channel": pruned_students,
        }
        quantized = []
        for name in q.routes:
            for parent in parents_of[get_route(name).parents]:
                quantized.append(self.add(
                    f"quantize/{name}-{parent.name.split('/', 1)[-1]}", "quantize",
                    {"data": self.data(), "parent_dir": str(parent.run_dir), "route": name,
                     "quantization": q.recipe(), "input_sizes": p.latency.input_sizes,
                     **self.settings("quantize")}, deps=[parent.name]))
        return pruned_students, quantized

    def student_prune_unit(self, student: Unit) -> Unit:
        """A distilled student channel-pruned and fine-tuned at the matched budget (for student+channel+int8)."""
        p, q = self.profile, self.profile.quantization
        ratio = q.student_channel_compression
        name = f"prune/{student.params['student']}-{student.params['loss']}-{q.student_channel_method}-{ratio:g}x"
        return self.add(name, "prune", {"data": self.data(), "base_dir": str(student.run_dir),
                                        "method": q.student_channel_method, "compression": ratio,
                                        "pruning": p.pruning.recipe(), "budget": p.budget.for_run(False),
                                        **self.settings("prune")}, deps=[student.name])

    def seed_units(self, base: Unit, prune_units: list[Unit], kd_units: list[Unit]):
        """``(pruning seeds, student seeds)`` of the headline models, or ``None`` until their runs are complete."""
        p = self.profile
        if not p.budget.seeds:
            return [], []
        headline = [u for u in prune_units if math.isclose(u.params["compression"], p.budget.headline_ratio)]
        candidates = headline + kd_units
        records = {u.name: read_record(self.root / u.run_dir) for u in candidates}
        if any(r is None for r in records.values()):
            return None

        def best(units: list[Unit]) -> Unit | None:
            scored = [u for u in units if records[u.name]["metrics"].get("validation_eer") is not None]
            return min(scored, key=lambda u: records[u.name]["metrics"]["validation_eer"]) if scored else None

        chosen = [u for u in headline if u.params["method"] == PAPER_METHOD]
        for family in (UNSTRUCTURED, CHANNEL):
            chosen.append(best([u for u in headline if get_method(u.params["method"]).family == family]))
        for teacher in (True, False):
            chosen.append(best([u for u in kd_units if (u.params["loss"] == "none") != teacher]))
        chosen = [self.units[name] for name in dict.fromkeys(u.name for u in chosen if u is not None)]
        prune_seeds = [self.prune_unit(base, u.params["method"], u.params["compression"], seed)
                       for u in chosen if u.kind == "prune" for seed in p.budget.seeds]
        kd_seeds = [self.student_unit(base, u.params["student"], u.params["loss"], seed)
                    for u in chosen if u.kind == "distill" for seed in p.budget.seeds]
        return prune_seeds, kd_seeds
