"""Turn a profile into the study's grid: one unit per notebook execution, in dependency order.

data -> base -> (fine-tuning rate sweep, students) -> pruning cells -> latency -> extra seeds,
students at matched total training, dedicated-schedule checks -> chapters. Each unit's key hashes
its parameters (upstream run folders included) and the code its results depend on (its notebook and
the modules it imports; display and orchestration code only for chapters:
:mod:`ocular_utils.core.code_version`), so changing anything upstream re-runs exactly what depends
on it, and nothing else.

Every compressed model and student gets the profile's matched budget (``budget`` section). The
runs behind a verdict go on past it to twice the budget, so that each comparison can be looked at
twice (B and 2B): every method at the headline ratio, the paper's method at every ratio, every
method at the ratio of a student's fair partners, every student. The plan is built in rounds:

1. data, base, the fine-tuning rate sweep (on validation identities) and the students;
2. the pruning grid at the rate the sweep chose (lowest mean validation EER);
3. once the headline runs are complete: extra seeds of the headline models (layer_weight, the best
   unstructured and the best channel method at the headline ratio, the best student with and
   without teacher), each student's best KD version again at the base's images + B (matched total
   training), and the dedicated runs decayed to zero at B that check the branch models; every
   choice by *validation* EER. The chapters follow.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..compression.registry import CHANNEL, UNSTRUCTURED, get_method
from ..compression.routes import get_route
from ..core.code_version import code_version
from ..core.paths import NOTEBOOKS, declared_parameters
from ..core.records import finished_record, is_complete, run_key
from ..core.study import PAPER_METHOD, VERDICT_REPLICATES, fair_ratio
from ..models.counting import parameter_counts
from ..models.networks import build_model
from .profiles import Profile


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
    missing: list[str] = field(default_factory=list)  # a chapter's runs left out: they failed or were blocked

    @property
    def output(self) -> Path:
        """Where the executed notebook is written."""
        return self.run_dir / "notebook.ipynb"

    def complete(self, root: Path) -> bool:
        """True if this unit finished: its record and the runner's done marker exist."""
        return is_complete(root / self.run_dir)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-")


class Planner:
    """Builds the units of one profile under ``results/<profile>``."""

    def __init__(self, profile: Profile, project_root: Path, results: str = "results", threads: int | None = None,
                 assume_done: bool = False, base_images: int | None = None, unavailable: dict[str, str] | None = None):
        """``assume_done``: plan every round now, as if the earlier rounds had finished (for pricing a plan):
        the sweep picks its first rate and each choice among models its first candidate; ``base_images``
        stands for the base's training images until its record exists. ``unavailable`` (name -> key):
        units that failed (or were blocked by a failure) in this run of the study: choices, the latency
        unit and the chapters go on without them, and each chapter names them (:attr:`Unit.missing`). A
        unit planned again under another key (e.g. the latency unit, now without them) is a new unit."""
        self.unavailable = dict(unavailable or {})
        self.profile = profile
        self.assume_done = assume_done
        self.base_images = base_images
        self.pending: list[str] = []  # what a later round will plan (e.g. extra seeds), for the status line
        self.root = project_root
        self.base = Path(results) / profile.name
        self.threads_override = threads
        self.units: dict[str, Unit] = {}
        self.notebook_dir = project_root / "notebooks"
        self.versions: dict[tuple[str, bool], str] = {}  # (notebook kind, display code counted) -> version
        self.declared: dict[str, tuple[str, ...]] = {}

    def _declared(self, kind: str) -> tuple[str, ...]:
        """The parameter names the notebook of ``kind`` declares (its parameters cell, read once)."""
        if kind not in self.declared:
            self.declared[kind] = declared_parameters(self.notebook_dir / NOTEBOOKS[kind])
        return self.declared[kind]

    def _version(self, notebook_kind: str, chapter: bool) -> str:
        """The code version of the notebook of ``notebook_kind``; a chapter's counts the display code
        (``report/``, ``runner/``) too, a training, export or timing unit's does not."""
        if (notebook_kind, chapter) not in self.versions:
            self.versions[notebook_kind, chapter] = code_version(self.notebook_dir / NOTEBOOKS[notebook_kind],
                                                                 display=chapter)
        return self.versions[notebook_kind, chapter]

    def add(self, name: str, kind: str, params: dict, deps=(), chapter: str | None = None,
            notebook_kind: str | None = None) -> Unit:
        """Register a unit; its key and run folder follow from its parameters."""
        if name in self.units:
            raise ValueError(f"two grid cells are both named {name!r} (duplicate entries in the profile?)")
        notebook_kind = notebook_kind or kind
        key = run_key(kind, params, self._version(notebook_kind, chapter=kind == "chapter"))
        run_dir = self.base / "runs" / kind / f"{_slug(name.split('/', 1)[-1])}-{key}"
        if kind != "chapter":  # chapters only read records; the others write theirs into run_dir
            params = params | {"run_dir": str(run_dir)}
        undeclared = sorted(set(params) - set(self._declared(notebook_kind)))
        if undeclared:
            raise ValueError(f"unit {name!r} passes {undeclared}, which {NOTEBOOKS[notebook_kind]}'s parameters cell "
                             "does not declare")
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
        kd_units = [self.student_unit(base, student, loss) for student in p.distillation.students
                    for loss in p.distillation.losses]
        sweep = self.sweep_units(base)
        rate = self.chosen_rate(sweep)
        if rate is None:
            failed = self.left_out(sweep)
            self.pending.append("pruning grid: planned once the fine-tuning rate sweep is complete"
                                + (f" (blocked: {len(failed)} sweep runs failed, e.g. {failed[0]})" if failed else ""))
            return self.units
        prune_units = [self.prune_unit(base, method, ratio, lr=rate) for method in p.pruning.methods
                       for ratio in p.pruning.compressions]
        route_parents, quantized = self.route_units(base, prune_units, kd_units, rate)
        models, timed_routes = self.available([base, *prune_units, *kd_units]), self.available(quantized)
        latency = self.add("latency", "latency", {"runs": [str(u.run_dir) for u in models],
                                                  "latency": p.latency.to_dict(), "device_csv_dir": "data",
                                                  "quantized_runs": [str(u.run_dir) for u in timed_routes],
                                                  **self.settings("latency")},
                           deps=[u.name for u in models + timed_routes], chapter="latency")
        latency.missing = self.left_out([base, *prune_units, *kd_units, *quantized])
        later = self.later_units(base, prune_units, kd_units, rate)
        if later is None:
            self.pending.append("extra seeds, students at matched total training, dedicated-schedule checks and "
                                "chapters: planned once the headline runs are complete")
            return self.units
        seeds, totals, dedicated = later
        if not self.available([latency]):
            self.pending.append("chapters: blocked, the latency unit failed")
            return self.units
        prune_units = [base] + prune_units + [u for u in seeds if u.kind == "prune"]
        kd_units = [base] + kd_units + [u for u in seeds if u.kind == "distill"] + totals
        dedicated = [(a, b) for a, b in dedicated if len(self.available([a, b])) == 2]
        checks = [unit for pair in dedicated for unit in pair]
        models = prune_units + kd_units[1:]
        self.chapter("pruning_results", prune_units, sweep_runs=self.run_dirs(sweep), headline=p.budget.headline_ratio,
                     also=sweep)
        self.chapter("distillation_results", kd_units, replicates=p.replicates)
        self.chapter("comparison", models, also=checks + [latency], latency_dir=str(latency.run_dir),
                     headline=p.budget.headline_ratio, budget=p.budget.to_dict(),
                     dedicated=[[str(a.run_dir), str(b.run_dir)] for a, b in dedicated],
                     replicates=max(p.replicates, VERDICT_REPLICATES))
        self.chapter("phone", models + route_parents + quantized, also=[latency], latency_dir=str(latency.run_dir),
                     device_csv_dir="data", replicates=max(p.replicates, VERDICT_REPLICATES))
        self.chapter("who_pays", models + route_parents + quantized, data=data, headline=p.budget.headline_ratio,
                     replicates=max(p.replicates, VERDICT_REPLICATES))
        self.chapter("timing", models + route_parents + quantized + sweep + checks + [self.units["data"], latency])
        return self.units

    def available(self, units: list[Unit]) -> list[Unit]:
        """``units`` without those that failed or were blocked in this run of the study."""
        return [u for u in units if self.unavailable.get(u.name) != u.key]

    def left_out(self, units: list[Unit]) -> list[str]:
        """The names of ``units`` that failed or were blocked (what a page says it lacks)."""
        return [u.name for u in units if self.unavailable.get(u.name) == u.key]

    @staticmethod
    def run_dirs(units: list[Unit]) -> list[str]:
        """The run folders of ``units`` (how chapters receive their runs)."""
        return [str(u.run_dir) for u in units]

    def chapter(self, name: str, runs: list[Unit], also: list[Unit] = (), **params) -> Unit:
        """A chapter over the available ``runs`` (its ``runs`` parameter and dependencies) and ``also`` (dependencies
        only); it names the runs it lacks."""
        shown = self.available(runs)
        unit = self.add(name, "chapter", {"runs": self.run_dirs(shown), **params},
                        deps=list(dict.fromkeys(u.name for u in shown + self.available(list(also)))),
                        chapter=name, notebook_kind=name)
        unit.missing = self.left_out(list(runs) + list(also))
        return unit

    def verdict_ratios(self) -> set[float]:
        """Grid ratios whose every method a verdict compares at B and 2B: the headline and each student's partners."""
        p = self.profile
        base = parameter_counts(build_model(p.base.backbone, 2, p.base.embedding_dim))["total"]
        ratios = {float(p.budget.headline_ratio)}
        for student in p.distillation.students:
            width = p.distillation.embedding_dim or p.base.embedding_dim
            ratio = fair_ratio(base / parameter_counts(build_model(student, 2, width))["total"],
                               p.pruning.compressions)
            if ratio is not None:
                ratios.add(float(ratio))
        return ratios

    def prune_unit(self, base: Unit, method: str, ratio: float, seed: int | None = None, lr: float | None = None,
                   role: str = "grid", **budget) -> Unit:
        """One pruning cell (with ``seed``: an extra seed of it, at the budget only).

        Runs behind a verdict go on to twice the budget; ``role`` names sweep and check runs, whose
        ``budget`` (and fine-tuning ``schedule``) are given.
        """
        p = self.profile
        if not hasattr(self, "_verdict_ratios"):
            self._verdict_ratios = self.verdict_ratios()
        behind_verdict = method == PAPER_METHOD or any(math.isclose(ratio, r) for r in self._verdict_ratios)
        extended = seed is None and role == "grid" and behind_verdict
        settings = self.settings("prune") | ({} if seed is None else {"seed": seed})
        schedule = budget.pop("schedule", None)
        finetune = ({} if lr is None else {"lr": lr}) | ({} if schedule is None else {"schedule": schedule})
        suffix = {"grid": "", "sweep": f"-lr{lr:g}", "dedicated": "-dedicated"}[role]
        name = f"{role if role != 'grid' else 'prune'}/{method}-{ratio:g}x{suffix}" + (
            "" if seed is None else f"-seed{seed}")
        run_budget = p.budget.for_run(extended, ratio, full=behind_verdict) | budget
        return self.add(name, "prune", {"data": self.data(), "base_dir": str(base.run_dir), "method": method,
                                        "compression": ratio, "pruning": p.pruning.recipe(**finetune),
                                        "budget": run_budget, "role": role, **settings}, deps=["base"])

    def student_unit(self, base: Unit, student: str, loss: str, seed: int | None = None, role: str = "grid",
                     images: int | None = None, points: list | None = None, **train) -> Unit:
        """One student (with ``seed``: an extra seed of it, at the budget only).

        ``role="total"``: trained for ``images`` (the base's images + B) with ``points``;
        ``role="dedicated"``: a run whose own schedule (``train``) ends at the budget.
        """
        p = self.profile
        settings = self.settings("distill") | ({} if seed is None else {"seed": seed})
        suffix = {"grid": "", "total": "-total", "dedicated": "-dedicated"}[role]
        name = f"distill/{student}-{loss}{suffix}" + ("" if seed is None else f"-seed{seed}")
        run_budget = p.budget.for_run(seed is None and role == "grid", images=images)
        if points is not None:
            run_budget["points"] = points
        if role == "dedicated":
            run_budget |= {"points": [1.0], "decay_fraction": 0.0}
        return self.add(name, "distill", {"data": self.data(), "teacher_dir": str(base.run_dir), "student": student,
                                          "loss": loss, "distillation": p.distillation.recipe(**train),
                                          "budget": run_budget, "role": role, **settings}, deps=["base"])

    def sweep_units(self, base: Unit) -> list[Unit]:
        """The fine-tuning rate sweep: each sweep method at the headline ratio, each rate, a short budget."""
        p = self.profile
        images = max(1, int(round(p.budget.images * p.pruning.sweep_fraction)))
        return [self.prune_unit(base, method, p.budget.headline_ratio, lr=lr, role="sweep",
                                images=images, points=[1.0])
                for method in p.pruning.sweep_methods for lr in p.pruning.lr_sweep]

    def chosen_rate(self, sweep: list[Unit]) -> float | None:
        """The fine-tuning rate with the lowest mean validation EER over the sweep methods (None until complete)."""
        if not sweep:
            return self.profile.pruning.finetune.lr
        records = [finished_record(self.root / u.run_dir) for u in sweep]
        if any(r is None for r in records):
            return self.profile.pruning.lr_sweep[0] if self.assume_done else None
        return sweep_choice(records)

    def route_units(self, base: Unit, prune_units: list[Unit], kd_units: list[Unit], rate: float
                    ) -> tuple[list[Unit], list[Unit]]:
        """``(new parent units, quantization units)`` of the profile's compression routes.

        Each route quantizes each of its parents (:data:`ocular_utils.compression.routes.PARENTS`);
        the student+channel route first channel-prunes and fine-tunes each student (new prune units).
        """
        p, q = self.profile, self.profile.quantization
        headline = [u for u in prune_units if math.isclose(u.params["compression"], p.budget.headline_ratio)]
        students = [u for u in kd_units if u.params["loss"] == q.student_loss]
        needs_pruned_students = any(get_route(name).parents == "student_channel" for name in q.routes)
        pruned_students = [self.student_prune_unit(s, rate) for s in students] if needs_pruned_students else []
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

    def student_prune_unit(self, student: Unit, rate: float) -> Unit:
        """A distilled student channel-pruned and fine-tuned at the matched budget (for student+channel+int8)."""
        p, q = self.profile, self.profile.quantization
        ratio = q.student_channel_compression
        name = f"prune/{student.params['student']}-{student.params['loss']}-{q.student_channel_method}-{ratio:g}x"
        return self.add(name, "prune", {"data": self.data(), "base_dir": str(student.run_dir),
                                        "method": q.student_channel_method, "compression": ratio,
                                        "pruning": p.pruning.recipe(lr=rate), "budget": p.budget.for_run(False),
                                        "role": "route", **self.settings("prune")}, deps=[student.name])

    def later_units(self, base: Unit, prune_units: list[Unit], kd_units: list[Unit], rate: float):
        """``(extra seeds, students at matched total training, dedicated check pairs)``, or ``None`` until the
        headline runs are complete. Every choice is made on validation EER."""
        p = self.profile
        headline = [u for u in prune_units if math.isclose(u.params["compression"], p.budget.headline_ratio)]
        candidates = headline + kd_units + [base]
        records = {u.name: finished_record(self.root / u.run_dir) for u in candidates}
        assumed = any(records[u.name] is None for u in self.available(candidates))
        if assumed and not self.assume_done:
            return None

        def best(units: list[Unit]) -> Unit | None:
            if assumed:  # pricing a plan: any candidate trains as long as the chosen one
                return units[0] if units else None
            eer = {u.name: (records[u.name] or {}).get("metrics", {}).get("validation_eer") for u in units}
            scored = [u for u in units if eer[u.name] is not None]
            return min(scored, key=lambda u: eer[u.name]) if scored else None

        paper = self.available([u for u in headline if u.params["method"] == PAPER_METHOD])
        chosen = list(paper)
        for family in (UNSTRUCTURED, CHANNEL):
            chosen.append(best([u for u in headline if get_method(u.params["method"]).family == family]))
        best_student = best([u for u in kd_units if u.params["loss"] != "none"])
        chosen += [best_student, best([u for u in kd_units if u.params["loss"] == "none"])]
        chosen = self.available([self.units[name] for name in dict.fromkeys(u.name for u in chosen if u is not None)])
        seeds = [self.prune_unit(base, u.params["method"], u.params["compression"], seed, lr=rate)
                 for u in chosen if u.kind == "prune" for seed in p.budget.seeds]
        seeds += [self.student_unit(base, u.params["student"], u.params["loss"], seed)
                  for u in chosen if u.kind == "distill" for seed in p.budget.seeds]
        totals = []
        base_images = records["base"]["training_images"] if records["base"] else self.base_images
        if p.budget.matched_total and base_images is None:
            self.pending.append("students at matched total training: their length (the base's images + B) is known "
                                "once the base has trained")
        elif p.budget.matched_total:
            base_images = int(base_images)
            for student in p.distillation.students:
                kd = best([u for u in kd_units if u.params["student"] == student and u.params["loss"] != "none"])
                if kd is not None:
                    images, points = total_budget(base_images, p.budget.images, p.budget.points)
                    totals.append(self.student_unit(base, student, kd.params["loss"], role="total", images=images,
                                                    points=points))
        dedicated = []
        if p.budget.dedicated_check:
            for unit in paper:
                dedicated.append((unit, self.prune_unit(base, PAPER_METHOD, unit.params["compression"], lr=rate,
                                                        role="dedicated", points=[1.0], decay_fraction=0.0,
                                                        schedule="linear")))
            if best_student is not None:
                dedicated.append((best_student, self.student_unit(
                    base, best_student.params["student"], best_student.params["loss"], role="dedicated",
                    schedule="linear")))
        return seeds, totals, dedicated


def total_budget(base_images: int, images: int, points: list) -> tuple[int, list[float]]:
    """A student's budget at matched total training: the base's images + B, looked at base + p * B."""
    total = base_images + images
    return total, sorted({round((base_images + p * images) / total, 6) for p in points if p >= 0.5} | {1.0})


def sweep_choice(records: list[dict]) -> float:
    """The fine-tuning rate of the sweep records with the lowest mean validation EER over their methods."""
    by_rate: dict[float, list[float]] = {}
    for record in records:
        by_rate.setdefault(record["params"]["pruning"]["finetune"]["lr"], []).append(
            record["metrics"]["validation_eer"])
    return min(by_rate, key=lambda lr: (sum(by_rate[lr]) / len(by_rate[lr]), lr))
