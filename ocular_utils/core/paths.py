"""Where the study lives: the project folder and paths relative to it."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


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
