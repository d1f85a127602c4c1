"""Generators of small data sets in the exact VISOB and UFPR-Periocular layouts (for tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ocular_utils.data.synthetic import eye_traits, render_eye, sample_nuisance, sample_traits


def _eye_image(subject: int, session: int, image: int, eye: str, size=(40, 60)) -> Image.Image:
    traits = eye_traits(sample_traits(0, subject), 0, subject, eye)
    nuisance = sample_nuisance(0, subject, min(session, 2), "iphone", "office", image, eye, 1.0)
    return Image.fromarray(render_eye(traits, nuisance, "iphone", "office", eye, size[0], size[1]))


def make_ufpr(root: Path, subjects: int = 30, sessions: int = 3, images_per_session: int = 2,
              ranges: dict | None = None, protocols: bool = True, pairs: bool = True, tiny: bool = False) -> Path:
    """UFPR-Periocular layout: periocularCropped/C####S#I##{L,R}.jpg + experimentalProtocol files.

    ``ranges`` maps part -> (first, last) subject numbers of open_world_valopen fold 1
    (default: 60% / 20% / 20% of the subjects).
    """
    crop = root / "periocularCropped"
    crop.mkdir(parents=True, exist_ok=True)
    names = {}
    for s in range(1, subjects + 1):
        for session in range(1, sessions + 1):
            for k in range(images_per_session):
                index = (session - 1) * 5 + k + 1
                for eye in "LR":
                    name = f"C{s:04d}S{session}I{index:02d}{eye}.jpg"
                    if tiny:
                        Image.fromarray(np.full((8, 8, 3), (s * 7) % 255, np.uint8)).save(crop / name)
                    else:
                        _eye_image(s, session, k, eye.lower()).save(crop / name, quality=90)
                    names.setdefault(s, []).append(name)
    if not protocols:
        return root
    if ranges is None:
        a, b = int(subjects * 0.6), int(subjects * 0.8)
        ranges = {"train": (1, a), "val": (a + 1, b), "test": (b + 1, subjects)}
    folder = root / "experimentalProtocol" / "open_world_valopen"
    folder.mkdir(parents=True, exist_ok=True)
    for part, (first, last) in ranges.items():
        lines = []
        for k, s in enumerate(range(first, last + 1)):
            for name in names[s]:
                left = name[-5] == "L"
                lines.append(f"{name} {2 * k + (0 if left else 1)} 3 {s % 2} {int(left)} {s % 7}")
        (folder / f"{part}_fold1.txt").write_text("\n".join(lines) + "\n")
    if pairs:
        pair_dir = folder / "test_pairs" / "fold1"
        pair_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        test_subjects = list(range(ranges["test"][0], ranges["test"][1] + 1))
        lines = []
        for s in test_subjects:
            own = [n for n in names[s] if n.endswith("L.jpg")]
            lines += [f"{own[0]} {other} 1" for other in own[1:]]
            others = [t for t in test_subjects if t != s]
            for t in rng.choice(others, size=min(3, len(others)), replace=False):
                lines.append(f"{own[0]} {names[int(t)][0]} 0")
        (pair_dir / "pairs_left.txt").write_text("\n".join(lines) + "\n")
    return root
