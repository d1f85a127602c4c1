"""Assemble the Jupyter Book (1.x) of one profile from executed notebooks, and build it.

``book/_toc.yml`` is the book's structure and names the *source* notebooks; this module copies the
executed notebooks into ``book/_generated/<profile>`` (a build product), writes a table of contents
that points at them (no re-execution) and adds an appendix with every executed grid notebook.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .plan import Unit

APPENDIX_CAPTION = "Appendix: every executed run"


def _retitle(source: Path, target: Path, title: str | None) -> None:
    notebook = json.loads(source.read_text())
    if title:
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                lines = "".join(cell["source"]).splitlines()
                if lines and lines[0].startswith("# "):
                    lines[0] = f"# {title}"
                    cell["source"] = "\n".join(lines)
                break
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(notebook, indent=1))


GENERATED = Path("book") / "_generated"


def toc_entries(toc: dict):
    """Every chapter and section entry of a table of contents, in reading order (sections after their page)."""
    def walk(entries):
        for entry in entries:
            yield entry
            yield from walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        yield from walk(part.get("chapters", []))


def assemble(units: dict[str, Unit], root: Path, profile) -> Path:
    """Copy executed notebooks to ``book/_generated/<profile>`` (inside the book's source folder, wherever the
    results live) and write that folder's ``_toc.yml``."""
    book_dir = GENERATED / profile.name
    if (root / book_dir).exists():
        shutil.rmtree(root / book_dir)
    chapters = {u.chapter: u for u in units.values() if u.chapter}
    template = yaml.safe_load((root / "book" / "_toc.yml").read_text())
    for entry in toc_entries(template):
        name = Path(entry["file"]).name
        if entry["file"].startswith("notebooks/"):
            unit = chapters.get(name)
            if unit is None or not (root / unit.output).is_file():
                raise FileNotFoundError(f"chapter {name} has no executed notebook; run the study first")
            target = book_dir / f"{name}.ipynb"
            _retitle(root / unit.output, root / target, None)
            entry["file"] = str(target.with_suffix(""))
    appendix = []
    for unit in units.values():
        if unit.kind in ("prune", "distill", "quantize") and (root / unit.output).is_file():
            target = book_dir / "runs" / f"{unit.run_dir.name}.ipynb"
            _retitle(root / unit.output, root / target, f"Run: {unit.name}")
            appendix.append({"file": str(target.with_suffix(""))})
    if appendix:
        template["parts"].append({"caption": APPENDIX_CAPTION, "chapters": appendix})
    toc = root / book_dir / "_toc.yml"
    toc.write_text(f"# generated for profile {profile.name}; edit book/_toc.yml instead\n" + yaml.safe_dump(
        template, sort_keys=False))
    return toc


def build(root: Path, toc: Path, output: Path, strict: bool = True) -> Path:
    """Run ``jupyter-book build`` (Sphinx, offline) with ``-W`` when ``strict``; return the HTML folder."""
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
               "--toc", str(toc),
               "--path-output", str(output), "--builder", "html"]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {completed.returncode}):\n"
                           f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}")
    return output / "_build" / "html"
