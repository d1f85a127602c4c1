"""Data: the synthetic default, the VISOB / UFPR-Periocular / generic loaders, protocols, images."""
from __future__ import annotations

from pathlib import Path

from .attributes import subject_attributes
from .config import DataConfig
from .generic import load_generic
from .schema import DatasetError, OcularDataset
from .ufpr import load_ufpr
from .visob import find_visit_dirs, load_visob

LAYOUTS = ("visob", "ufpr", "generic")
EXPECTED = (
    "VISOB: <root>/<phone>_<light>_short/.../{enrollments_rgb,verifications_rgb}/<subject>_<image>_<l|r>_c.png; "
    "UFPR-Periocular: <root>/periocularCropped/C<subject>S<session>I<image><L|R>.jpg (+ experimentalProtocol/); "
    "generic: <root>/<subject>/[<session>/]<image files>"
)


def detect_layout(root: str | Path) -> str:
    """Tell which supported layout a dataset folder has, or raise naming the expected ones."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset root {root} is not a folder")
    if (root / "periocularCropped").is_dir():
        return "ufpr"
    if find_visit_dirs(root):
        return "visob"
    for subject in (p for p in root.iterdir() if p.is_dir()):
        for item in subject.rglob("*"):
            if item.is_file() and item.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
                return "generic"
    raise DatasetError(f"{root} matches none of the supported layouts. Expected one of: {EXPECTED}")


def load_dataset(root: str | Path, layout: str = DataConfig.layout, attributes: str | Path | None = None
                 ) -> OcularDataset:
    """Index the dataset at ``root`` (layout ``auto``, ``visob``, ``ufpr`` or ``generic``) with its subject
    attributes (``attributes``: a ``subject,attribute,value`` CSV; default ``<root>/subject_attributes.csv``)."""
    if layout == "auto":
        layout = detect_layout(root)
    loaders = {"visob": load_visob, "ufpr": load_ufpr, "generic": load_generic}
    if layout not in loaders:
        raise ValueError(f"unknown layout {layout!r}; expected 'auto' or one of {list(loaders)}")
    dataset = loaders[layout](root)
    dataset.attributes, notes = subject_attributes(dataset, attributes)
    dataset.notes += notes
    return dataset


__all__ = ["DatasetError", "OcularDataset", "detect_layout", "load_dataset", "load_generic", "load_ufpr",
           "load_visob", "LAYOUTS"]
