"""Generic ocular folders: ``<root>/<subject>/<images>`` or ``<root>/<subject>/<session>/<images>``."""
from __future__ import annotations

import re
from pathlib import Path

from .schema import IMAGE_SUFFIXES, DatasetError, OcularDataset, make_frame, require_dir

EYE_TOKEN = re.compile(r"(?:^|[_\-. ])(l|r|left|right)(?:$|[_\-. ])", re.IGNORECASE)


def _eye_from_name(stem: str) -> str:
    match = EYE_TOKEN.search(stem)
    return match.group(1)[0].lower() if match else "u"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_generic(root: str | Path, name: str = "generic") -> OcularDataset:
    """Index a folder per subject, optionally with a sub-folder per session."""
    root = require_dir(Path(root), "dataset root")
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = []
    for subject_dir in subjects:
        sessions = sorted(p for p in subject_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        groups = [(1, subject_dir)] if not sessions else []
        for index, session_dir in enumerate(sessions, start=1):
            number = int(session_dir.name) if session_dir.name.isdigit() else index
            groups.append((number, session_dir))
        if sessions and _images(subject_dir):
            raise DatasetError(f"{subject_dir} mixes images and session folders; use one or the other")
        for session, folder in groups:
            for path in _images(folder):
                rows.append(dict(path=str(path), dataset=name, subject=subject_dir.name,
                                 eye=_eye_from_name(path.stem), session=session, phone="", light="",
                                 image_id=path.stem))
    if not rows:
        raise DatasetError(f"{root} has no <subject>/<image> or <subject>/<session>/<image> files")
    return OcularDataset(name=name, root=root, layout="generic", frame=make_frame(rows),
                         notes=[f"{len(subjects)} subject folders"])
