"""The embedded synthetic data set: deterministic, fast enough, in VISOB's exact layout."""
import hashlib
import re

import numpy as np
import pytest

from ocular_utils.data.synthetic import (
    FOLDER_NAMES,
    MANIFEST,
    SyntheticConfig,
    eye_traits,
    generate_visob_like,
    render_eye,
    sample_nuisance,
    sample_traits,
    subject_ids,
)

NAME = re.compile(r"^\d{4}_\d{4}_[lr]_c\.png$")


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    config = SyntheticConfig(subjects=3, seed=11, width=48, height=32, workers=1)
    a = generate_visob_like(tmp_path / "a", config, progress=False)
    b = generate_visob_like(tmp_path / "b", SyntheticConfig(subjects=3, seed=11, width=48, height=32, workers=2),
                            progress=False)
    c = generate_visob_like(tmp_path / "c", SyntheticConfig(subjects=3, seed=12, width=48, height=32), progress=False)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_layout_matches_visob(visob_root):
    config = SyntheticConfig(subjects=10, seed=3, width=60, height=40)
    for (phone, light), folder in FOLDER_NAMES.items():
        for visit_dir in ("enrollments_rgb", "verifications_rgb"):
            files = sorted((visob_root / folder / folder / visit_dir).iterdir())
            assert files, f"{folder}/{visit_dir} is empty"
            assert all(NAME.match(f.name) for f in files), [f.name for f in files if not NAME.match(f.name)][:3]
            assert len(files) == config.subjects * 2 * config.images_per_visit
    subjects = {p.name[:4] for p in visob_root.rglob("*.png")}
    assert subjects == set(subject_ids(config))
    assert len(list(visob_root.rglob("*.png"))) == 10 * 9 * 2 * 2
    ids = {int(p.name.split("_")[1]) for p in visob_root.rglob("*.png")}
    assert min(ids) == 1001


def test_rerun_reuses_and_refuses_other_parameters(tmp_path):
    root = tmp_path / "d"
    config = SyntheticConfig(subjects=2, seed=0, width=32, height=32)
    generate_visob_like(root, config, progress=False)
    stamp = (root / MANIFEST).stat().st_mtime_ns
    generate_visob_like(root, config, progress=False)
    assert (root / MANIFEST).stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="other parameters"):
        generate_visob_like(root, SyntheticConfig(subjects=3, seed=0, width=32, height=32), progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_visob_like(tmp_path / "busy", config, progress=False)


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="unknown phone"):
        SyntheticConfig(phones=("nokia",))
    with pytest.raises(ValueError, match="subjects"):
        SyntheticConfig(subjects=1)


def _render(subject, visit, image, eye="l", light="office", phone="iphone"):
    traits = eye_traits(sample_traits(0, subject), 0, subject, eye)
    return render_eye(traits, sample_nuisance(0, subject, visit, phone, light, image, eye, 1.0), phone, light, eye,
                      40, 60).astype(float)


def test_identity_survives_nuisance_better_than_between_subjects():
    # Mean pixel distance between two captures of one eye (other visit, other phone) is smaller than
    # between two subjects under identical conditions, on average over subjects.
    within, between = [], []
    for s in range(8):
        a = _render(s, 1, 0)
        within.append(np.abs(a - _render(s, 2, 0, phone="samsung")).mean())
        between.append(np.abs(a - _render(s + 100, 1, 0)).mean())
    assert np.mean(within) < np.mean(between)


def test_lighting_changes_the_image():
    office, dim = _render(1, 1, 0, light="office"), _render(1, 1, 0, light="dim_light")
    assert dim.mean() < 0.8 * office.mean()
