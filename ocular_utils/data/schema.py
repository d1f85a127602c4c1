"""The common image index every loader produces, and the errors bad input raises."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# One row per image. ``session`` is the visit (VISOB) or session (UFPR); ``phone`` and ``light``
# are empty strings where the data set does not record them; ``eye`` is "l", "r" or "u" (unknown).
COLUMNS = ("path", "dataset", "subject", "eye", "session", "phone", "light", "image_id")


class DatasetError(ValueError):
    """A data set folder, file or protocol is not what the loader expects."""


@dataclass
class OcularDataset:
    """An indexed ocular data set: one row per image plus layout facts and loader notes."""

    name: str
    root: Path
    layout: str
    frame: pd.DataFrame
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)
    protocols: dict = field(default_factory=dict)
    attributes: pd.DataFrame = field(default_factory=pd.DataFrame)  # subject -> one column per attribute

    def __post_init__(self):
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise DatasetError(f"image index of {self.name} lacks columns {missing}")
        if self.frame.empty:
            raise DatasetError(f"no images found under {self.root} ({self.layout} layout)")
        self.frame = self.frame.sort_values(["subject", "session", "phone", "light", "image_id", "eye"],
                                            kind="stable").reset_index(drop=True)

    @property
    def subjects(self) -> list[str]:
        """Sorted subject IDs."""
        return sorted(self.frame["subject"].unique())

    def summary(self) -> dict:
        """Counts for the dataset card: subjects, images, images per subject and per condition."""
        frame = self.frame
        per_subject = frame.groupby("subject").size()
        return {
            "name": self.name,
            "layout": self.layout,
            "synthetic": self.synthetic,
            "subjects": int(frame["subject"].nunique()),
            "images": int(len(frame)),
            "images_per_subject_min": int(per_subject.min()),
            "images_per_subject_median": float(per_subject.median()),
            "images_per_subject_max": int(per_subject.max()),
            "sessions": sorted(int(s) for s in frame["session"].unique()),
            "phones": sorted(p for p in frame["phone"].unique() if p),
            "lights": sorted(v for v in frame["light"].unique() if v),
            "eyes": sorted(frame["eye"].unique()),
        }

    def condition_table(self) -> pd.DataFrame:
        """Images per phone x lighting x session (the dataset card's table)."""
        return (self.frame.groupby(["phone", "light", "session"]).size().rename("images").reset_index())


def make_frame(rows: list[dict]) -> pd.DataFrame:
    """Build an index DataFrame with the common columns and dtypes."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["session"] = frame["session"].astype(int)
    for column in ("subject", "eye", "phone", "light", "image_id", "dataset", "path"):
        frame[column] = frame[column].astype(str)
    return frame


def require_dir(path: Path, what: str) -> Path:
    """Raise a clear error unless ``path`` is an existing folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is not a folder")
    return path
