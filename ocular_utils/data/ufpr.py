"""UFPR-Periocular loader: ``periocularCropped/`` images and the official protocol files.

Images are ``C<subject 4d>S<session 1-3>I<image 01-15><L|R>.jpg``. Protocols live in
``experimentalProtocol/{closed_world,open_world,open_world_valopen}/{train,val,test}_fold{1,2,3}.txt``
(one image a line, six columns, the second the class label) with verification pairs in
``experimentalProtocol/<protocol>/test_pairs/fold<k>/*.txt`` (``<probe> <reference> <1|0>``).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .schema import IMAGE_SUFFIXES, DatasetError, OcularDataset, make_frame, require_dir

FILE_PATTERN = re.compile(r"^C(\d{4})S([1-9])I(\d{2})([LR])$")
PROTOCOLS = ("closed_world", "open_world", "open_world_valopen")
PARTS = ("train", "val", "test")


def _read_protocol_list(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise DatasetError(f"{path}:{number}: expected 6 space-separated columns, found {len(fields)}: {line!r}")
        rows.append(dict(file=fields[0], label=int(fields[1]), col3=fields[2], gender=fields[3],
                         is_left=fields[4], col6=fields[5]))
    return pd.DataFrame(rows, columns=["file", "label", "col3", "gender", "is_left", "col6"])


def _read_pairs(folder: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(folder.glob("*.txt")):
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[2] not in ("0", "1"):
                raise DatasetError(f"{path}:{number}: expected '<probe> <reference> <1|0>', found {line!r}")
            rows.append(dict(probe=fields[0], reference=fields[1], genuine=fields[2] == "1"))
        frames.append(pd.DataFrame(rows, columns=["probe", "reference", "genuine"]))
    if not frames:
        raise DatasetError(f"{folder} holds no pair files (*.txt)")
    return pd.concat(frames, ignore_index=True)


def read_protocols(root: Path, known_files: set[str]) -> dict:
    """Parse every protocol/fold present; every file they name must exist among ``known_files``."""
    base = root / "experimentalProtocol"
    protocols: dict = {}
    if not base.is_dir():
        return protocols
    for protocol in PROTOCOLS:
        folder = base / protocol
        if not folder.is_dir():
            continue
        for fold in (1, 2, 3):
            paths = {part: folder / f"{part}_fold{fold}.txt" for part in PARTS}
            if not any(p.is_file() for p in paths.values()):
                continue
            absent = [str(p) for p in paths.values() if not p.is_file()]
            if absent:
                raise DatasetError(f"protocol {protocol} fold {fold} is incomplete: missing {absent}")
            entry = {part: _read_protocol_list(path) for part, path in paths.items()}
            pairs_dir = folder / "test_pairs" / f"fold{fold}"
            entry["pairs"] = _read_pairs(pairs_dir) if pairs_dir.is_dir() else None
            named = set().union(*(set(entry[p]["file"]) for p in PARTS))
            if entry["pairs"] is not None:
                named |= set(entry["pairs"]["probe"]) | set(entry["pairs"]["reference"])
            missing = sorted(named - known_files)
            if missing:
                raise DatasetError(
                    f"protocol {protocol} fold {fold} names {len(missing)} images that are not in "
                    f"{root / 'periocularCropped'} (e.g. {missing[:3]})"
                )
            protocols.setdefault(protocol, {})[fold] = entry
    return protocols


def load_ufpr(root: str | Path, name: str = "ufpr-periocular") -> OcularDataset:
    """Index UFPR-Periocular and parse its official protocols when present."""
    root = require_dir(Path(root), "UFPR-Periocular root")
    image_dir = root / "periocularCropped"
    if not image_dir.is_dir():
        raise DatasetError(f"{root} has no periocularCropped/ folder: not a UFPR-Periocular layout")
    rows, bad_names = [], []
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = FILE_PATTERN.match(path.stem)
        if not match:
            bad_names.append(path.name)
            continue
        subject, session, image, eye = match.groups()
        rows.append(dict(path=str(path), dataset=name, subject=f"C{subject}", eye=eye.lower(),
                         session=int(session), phone="", light="", image_id=image))
    if bad_names:
        raise DatasetError(
            f"{len(bad_names)} files in {image_dir} do not follow 'C<subject>S<session>I<image><L|R>.jpg' "
            f"(e.g. {bad_names[:3]})"
        )
    frame = make_frame(rows)
    protocols = read_protocols(root, {Path(p).name for p in frame["path"]})
    notes = []
    if protocols:
        notes.append("official protocols found: " + ", ".join(
            f"{p} folds {sorted(folds)}" for p, folds in protocols.items()))
    else:
        notes.append("no experimentalProtocol/ files: splits fall back to a seeded subject-independent split")
    return OcularDataset(name=name, root=root, layout="ufpr", frame=frame, notes=notes, protocols=protocols)
