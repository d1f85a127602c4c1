"""Result records: one JSON file per run, keyed by a hash of its parameters and the code version.

A run's folder (``run_dir``) holds its artifacts (checkpoints, models, the executed notebook) and,
written last and atomically, ``record.json``. A folder with a complete record is a finished run;
anything else is re-run (training resumes from its ``last.pt``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd

from .io import atomic_write_json
from .runtime import describe_machine

RECORD = "record.json"
PACKAGE_DIR = Path(__file__).resolve().parent


def code_version(extra_files: list[str | Path] = ()) -> str:
    """Hash of the package's source (and of ``extra_files``, e.g. the notebook that runs)."""
    digest = hashlib.sha256()
    files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted(PACKAGE_DIR.rglob("*.yml"))
    for path in files + [Path(p) for p in extra_files]:
        digest.update(str(path.relative_to(PACKAGE_DIR) if path.is_relative_to(PACKAGE_DIR) else path.name).encode())
        digest.update(_notebook_source(path) if path.suffix == ".ipynb" else path.read_bytes())
    return digest.hexdigest()[:12]


def _notebook_source(path: Path) -> bytes:
    """A notebook's cell sources only (outputs and metadata do not change what runs)."""
    cells = json.loads(path.read_text()).get("cells", [])
    return json.dumps([(c.get("cell_type"), "".join(c.get("source", ""))) for c in cells]).encode()


def run_key(kind: str, params: dict, version: str) -> str:
    """Stable key of a run: a hash of its kind, parameters and code version."""
    payload = json.dumps({"kind": kind, "params": params, "version": version}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make_record(kind: str, params: dict, metrics: dict | None = None, model: dict | None = None,
                timings: dict | None = None, synthetic: bool = False, label: str | None = None,
                files: dict | None = None, **extra) -> dict:
    """Assemble a record: parameters, metrics, model cost, timings, files and the environment."""
    return {
        "kind": kind,
        "label": label or kind,
        "status": "complete",
        "synthetic": bool(synthetic),
        "params": params,
        "metrics": metrics or {},
        "model": model or {},
        "timings": timings or {},
        "files": files or {},
        "environment": describe_machine(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def write_record(run_dir: str | Path, record: dict) -> Path:
    """Write ``record.json`` into ``run_dir`` atomically (the run counts as complete afterwards)."""
    return atomic_write_json(Path(run_dir) / RECORD, record)


def read_record(run_dir: str | Path) -> dict | None:
    """The run's record, or ``None`` if the run has not completed."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("status") == "complete" else None


def is_complete(run_dir: str | Path) -> bool:
    """True if ``run_dir`` holds a complete record."""
    return read_record(run_dir) is not None


def load_records(results_dir: str | Path, kind: str | None = None) -> pd.DataFrame:
    """All complete records under ``results_dir`` as one flat table (``params.*``, ``metrics.*``, ...)."""
    rows = []
    for path in sorted(Path(results_dir).rglob(RECORD)):
        record = json.loads(path.read_text())
        if record.get("status") != "complete" or (kind and record.get("kind") != kind):
            continue
        record = dict(record)
        record["run_dir"] = str(path.parent)
        record.pop("environment", None)
        rows.append(record)
    if not rows:
        return pd.DataFrame(columns=["kind", "label", "run_dir"])
    return pd.json_normalize(rows, max_level=1)
