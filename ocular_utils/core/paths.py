"""Where the study lives: the project folder and paths relative to it."""
from __future__ import annotations

import ast
import json
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# The notebook of each unit kind (runs, then chapters), under the project's notebooks/ folder
NOTEBOOKS = {
    "data": "data.ipynb",
    "base": "train_base.ipynb",
    "prune": "prune.ipynb",
    "distill": "distill.ipynb",
    "latency": "latency.ipynb",
    "quantize": "quantize.ipynb",
    "pruning_results": "pruning_results.ipynb",
    "distillation_results": "distillation_results.ipynb",
    "comparison": "comparison.ipynb",
    "timing": "timing.ipynb",
    "phone": "phone.ipynb",
    "who_pays": "who_pays.ipynb",
}


def project_root() -> Path:
    """The study's top folder: the one holding ``_config.yml`` and ``ocular_utils/``.

    Searched upward from the working directory (notebooks may run from ``notebooks/`` or from a
    copy of the project); when none is found, the folder above the installed package.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "ocular_utils").is_dir():
            return folder
    return PACKAGE_DIR.parent


def resolve(path: str | Path | None) -> Path | None:
    """``path`` as given if absolute, else relative to :func:`project_root`; ``None`` stays ``None``."""
    if path is None:
        return None
    path = Path(path)
    return path if path.is_absolute() else project_root() / path


def notebook_path(kind: str) -> Path:
    """The notebook a unit of ``kind`` executes (in the project's ``notebooks/``); a clear error for an unknown kind."""
    if kind not in NOTEBOOKS:
        raise ValueError(f"unknown unit kind {kind!r}; expected one of {list(NOTEBOOKS)}")
    return project_root() / "notebooks" / NOTEBOOKS[kind]


def declared_parameters(notebook: str | Path) -> tuple[str, ...]:
    """The names the notebook's ``parameters`` cell assigns, in order: what ``papermill.inspect_notebook`` lists
    (a test holds the two equal), read with :mod:`ast` so that a unit's kernel need not import papermill and
    nbformat (about 1.7 s of every unit's start). An error names the notebook when it has no parameters cell."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ValueError(f"{notebook} has no cell tagged 'parameters'")
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    names = []
    for statement in ast.parse(source).body:
        targets = statement.targets if isinstance(statement, ast.Assign) else \
            [statement.target] if isinstance(statement, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return tuple(names)
