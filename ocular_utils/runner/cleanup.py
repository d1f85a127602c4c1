"""The results folder: how much it holds, which run folders no plan uses any more, and cleaning them.

A results folder keeps, per unit of the current plan, what the book, the phone kit and a resume
need: the record, the executed notebook, the saved model, scores and exports. What it need not keep:
run folders whose key no unit of the current plan has (left by an older code version or profile),
the training checkpoints of finished runs (kept only with ``--keep-checkpoints``), and, unless asked
to keep it, the built book (it is rebuilt from the executed notebooks).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .plan import Unit


def folder_bytes(*paths: Path) -> int:
    """Bytes the files under ``paths`` take (a file hard-linked under several names counts once, as ``du`` counts
    it; 0 for a path that does not exist)."""
    sizes = {}
    for path in map(Path, paths):
        for f in path.rglob("*") if path.exists() else ():
            if f.is_file() and not f.is_symlink():
                stat = f.stat()
                sizes[stat.st_dev, stat.st_ino] = stat.st_size
    return sum(sizes.values())


def human(size: int) -> str:
    """``size`` bytes as MB or GB."""
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def stale_runs(units: dict[str, Unit], root: Path, results: Path) -> list[Path]:
    """Run folders under ``results/runs`` that no unit of the plan owns (an older code version or profile)."""
    owned = {(root / unit.run_dir).resolve() for unit in units.values()}
    runs = results / "runs"
    folders = [d for kind in sorted(runs.iterdir()) if kind.is_dir() for d in sorted(kind.iterdir()) if d.is_dir()] \
        if runs.is_dir() else []
    return [d for d in folders if d.resolve() not in owned]


@dataclass
class Cleaned:
    """What :func:`clean` removed and how much the folders held before and after."""

    removed: list[Path] = field(default_factory=list)
    before: int = 0
    after: int = 0


def clean(units: dict[str, Unit], root: Path, results: Path, book: Path | None = None) -> Cleaned:
    """Remove stale run folders, the checkpoints of finished units and (when ``book`` is given) the built book.

    Units that are not finished keep their checkpoints: an interrupted training resumes from them.
    """
    targets = [p for p in (results, book) if p is not None]
    report = Cleaned(before=folder_bytes(*targets))
    doomed = stale_runs(units, root, results)
    doomed += [root / u.run_dir / "checkpoints" for u in units.values()
               if u.complete(root) and (root / u.run_dir / "checkpoints").is_dir()]
    if book is not None and book.exists():
        doomed.append(book)
    for path in doomed:
        shutil.rmtree(path)
        report.removed.append(path)
    report.after = folder_bytes(*targets)
    return report

