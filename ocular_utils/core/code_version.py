"""Which source a unit's results depend on, and a hash of it: the code half of a run's key.

A unit (one papermill execution) depends on its notebook's cell sources and on the package modules
that notebook imports, transitively (imports inside functions count: they are found in the syntax
tree, not by running anything). A training or export unit does not depend on the display and
orchestration stages (``report/``, ``runner/`` except ``runner/session.py``, the run prelude that
sets seeds, threads and the device): editing a plot, a chapter or the scheduler leaves every trained
model done. Chapters depend on everything they import.
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

from .paths import PACKAGE_DIR

PACKAGE = PACKAGE_DIR.name
# stages a training unit's results never depend on (walked through neither for hashing nor for imports)
DISPLAY_STAGES = ("report", "runner")
RUN_PRELUDE = f"{PACKAGE}.runner.session"


def _module_file(name: str) -> Path | None:
    """The source file of package module ``name`` (a module or a subpackage's ``__init__``), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    path = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Package modules named by the import statements of ``tree`` (the source of ``module``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # a submodule, when one has that name
    return {name for name in found if name.split(".")[0] == PACKAGE and _module_file(name)}


def _module_imports(name: str) -> set[str]:
    path = _module_file(name)
    return _imports(ast.parse(path.read_text()), name, path.name == "__init__.py")


def notebook_imports(notebook: str | Path) -> set[str]:
    """Package modules imported by a notebook's code cells."""
    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    found = set()
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = "".join(cell.get("source", ""))
            lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
            found |= _imports(ast.parse("\n".join(lines)), "__notebook__", False)
    return found


def _is_display(name: str) -> bool:
    stage = name.split(".")[1] if name.count(".") else ""
    return stage in DISPLAY_STAGES and name != RUN_PRELUDE


def dependencies(notebook: str | Path, display: bool = False) -> list[Path]:
    """Source files a notebook's results depend on: every package module it imports, transitively.

    With ``display=False`` (training, export and timing units) ``report/`` and ``runner/`` modules
    (but the run prelude ``runner/session.py``) are left out and not followed. Each included module
    brings its subpackages' ``__init__`` files; the top-level ``__init__`` (the lazy public API) is not
    a dependency unless imported by name.
    """
    todo, seen = list(notebook_imports(notebook)), set()
    while todo:
        name = todo.pop()
        if name in seen or (not display and _is_display(name)):
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(2, len(parts))]  # the subpackages on its path
        todo += sorted(_module_imports(name))
    return sorted({_module_file(name) for name in seen})


def notebook_source(path: str | Path) -> bytes:
    """A notebook's cell sources only (outputs and metadata do not change what runs)."""
    cells = json.loads(Path(path).read_text()).get("cells", [])
    return json.dumps([(c.get("cell_type"), "".join(c.get("source", ""))) for c in cells]).encode()


def code_version(notebook: str | Path, display: bool = False) -> str:
    """Hash of a notebook's cell sources and of the source of every module its results depend on."""
    digest = hashlib.sha256()
    digest.update(Path(notebook).name.encode())
    digest.update(notebook_source(notebook))
    for path in dependencies(notebook, display):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
