"""Result records: one JSON file per run, keyed by a hash of its parameters and the code it depends on
(:func:`ocular_utils.core.code_version.code_version`).

A run's folder (``run_dir``) holds its artifacts (checkpoints, models, the executed notebook),
``record.json`` (a :class:`Record`, written atomically by the notebook once its results are saved)
and, written last by the runner once the notebook has finished every cell, ``done.json``. A folder
with both is a finished run; anything else is re-run (training resumes from its ``last.pt``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .atomic import atomic_write_json
from .environment import describe_machine

RECORD = "record.json"
DONE = "done.json"  # the runner's marker: the unit's notebook ran every cell after writing its record
KINDS = ("data", "base", "prune", "distill", "quantize", "latency", "chapter")


def run_key(kind: str, params: dict, version: str) -> str:
    """Stable key of a run: a hash of its kind, parameters and code version."""
    payload = json.dumps({"kind": kind, "params": params, "version": version}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Record:
    """What one run leaves: what it was (typed fields), what it measured, and where it ran.

    The identity of a model is in typed fields (``method``, ``requested_compression``, ``student``,
    ``kd_loss``, ``family``, ``seed``, ``training_images``, ``still_improving``); display labels are made from them
    (:func:`display_label`) and never parsed back.
    """

    kind: str
    params: dict
    synthetic: bool = False
    family: str | None = None  # "base", "unstructured pruning", "channel pruning", "KD student", "student, no teacher"
    backbone: str | None = None  # the network: the base's backbone or the student's
    method: str | None = None  # compression method (a name of ocular_utils.METHODS)
    requested_compression: float | None = None
    achieved_compression: float | None = None  # base parameters / nonzero parameters of the deployed network
    student: str | None = None
    kd_loss: str | None = None  # "none" for the no-teacher control
    seed: int | None = None
    training_images: int | None = None  # budget: images seen training (base, students) or fine-tuning (compressed)
    role: str | None = None  # "grid" (the study's models), "total" (a student at the base's images + B),
    # "sweep" (the fine-tuning rate sweep), "dedicated" (a run whose own schedule ends at its budget) or
    # "route" (a compression route's own parent, e.g. a pruned student)
    still_improving: bool | None = None  # information only: EER fell measurably from the budget to twice it
    precision: str | None = None  # of the training steps ("fp32" or "bf16"); None for runs that train nothing
    metrics: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # parameters, MACs, file sizes
    timings: dict = field(default_factory=dict)  # seconds per phase
    files: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # training history, reload check, subsets, split, machine
    environment: dict = field(default_factory=describe_machine)
    created: str = field(default_factory=_now)
    status: str = "complete"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown record kind {self.kind!r}; expected one of {KINDS}")

    def to_dict(self) -> dict:
        """The record as a JSON-ready dict."""
        return dataclasses.asdict(self)


def display_label(record) -> str:
    """A short human label of a model record (a :class:`Record`, its dict, or a table row); for display only."""
    get = record.get if isinstance(record, dict) or hasattr(record, "get") else lambda k: getattr(record, k)
    kind = get("kind")
    if kind == "base":
        return f"{get('backbone')} (base)"
    if kind == "prune":
        route = " (route parent)" if get("role") == "route" else ""
        return f"{get('method')} {float(get('requested_compression')):g}x{route}"
    if kind == "distill":
        total = ", base + B images" if get("role") == "total" else ""
        return f"{get('student')} ({get('kd_loss')}{total})"
    return str(kind)


def write_record(run_dir: str | Path, record: Record) -> Path:
    """Write ``record.json`` into ``run_dir`` atomically (the run counts as complete afterwards)."""
    return atomic_write_json(Path(run_dir) / RECORD, record.to_dict())


def read_record(run_dir: str | Path) -> dict | None:
    """The run's record as a dict, or ``None`` if the run has not completed."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("status") == "complete" else None


@functools.lru_cache(maxsize=4096)
def _details(run_dir: str, modified: float) -> dict:
    return (read_record(run_dir) or {}).get("details") or {}


def read_details(run_dir: str | Path) -> dict:
    """The ``details`` of a run's complete record ({} if none); read once per version of the file."""
    path = Path(run_dir) / RECORD
    return _details(str(run_dir), path.stat().st_mtime if path.is_file() else 0.0)


def mark_done(run_dir: str | Path, key: str) -> Path:
    """Mark a unit finished (atomically, last): its notebook ran every cell and its record is complete."""
    if read_record(run_dir) is None:
        raise RuntimeError(f"{Path(run_dir) / RECORD} is missing or incomplete; a unit without it is not done")
    return atomic_write_json(Path(run_dir) / DONE, {"key": key, "finished": _now()})


def clear_done(run_dir: str | Path) -> None:
    """Forget that a run finished (its marker first, then its record): it will run again."""
    for name in (DONE, RECORD):
        (Path(run_dir) / name).unlink(missing_ok=True)


def is_complete(run_dir: str | Path) -> bool:
    """True if ``run_dir`` is a finished unit: a complete record and the runner's done marker."""
    return (Path(run_dir) / DONE).is_file() and read_record(run_dir) is not None


def finished_record(run_dir: str | Path) -> dict | None:
    """The record of a finished unit (:func:`is_complete`), else ``None``."""
    return read_record(run_dir) if (Path(run_dir) / DONE).is_file() else None


TYPED_COLUMNS = [f.name for f in dataclasses.fields(Record) if f.name not in
                 ("params", "metrics", "model", "timings", "files", "details", "environment")]


def load_records(results_dir: str | Path, kind: str | None = None) -> pd.DataFrame:
    """All complete records under ``results_dir`` as one flat table (typed columns, ``metrics.*``, ``model.*``, ...).

``run_dir`` is the run's folder, ``run`` its unique name (how tables and the latency table refer to a model).
"""
    rows = []
    for path in sorted(Path(results_dir).rglob(RECORD)):
        record = json.loads(path.read_text())
        if record.get("status") != "complete" or (kind and record.get("kind") != kind):
            continue
        record = {k: v for k, v in record.items() if k not in ("environment", "details", "params")}
        record["run_dir"] = str(path.parent)
        record["run"] = path.parent.name  # the run's unique folder name: how tables refer to a model
        rows.append(record)
    if not rows:
        return pd.DataFrame(columns=TYPED_COLUMNS + ["run_dir", "run"])
    return pd.json_normalize(rows, max_level=1)
