"""Loaders of the VISOB, UFPR-Periocular and generic layouts, and every bad input they refuse."""
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ocular_utils.data import DatasetError, detect_layout, load_dataset
from ocular_utils.data.images import CorruptImageError, build_image_store
from ocular_utils.data.prepare import prepare_data
from ocular_utils.data.protocols import IdentityOverlapError, make_split

from .fixtures import make_ufpr


def test_visob_fields(visob_root):
    dataset = load_dataset(visob_root)
    assert dataset.layout == "visob" and dataset.synthetic
    frame = dataset.frame
    assert set(frame["phone"]) == {"iphone", "samsung", "oppo"}
    assert set(frame["light"]) == {"office", "dim_light", "day_light"}
    assert set(frame["session"]) == {1, 2} and set(frame["eye"]) == {"l", "r"}
    row = frame[frame["path"].str.contains("samsung_daylight_short/samsung_daylight_short/verifications_rgb")].iloc[0]
    assert (row["phone"], row["light"], row["session"]) == ("samsung", "day_light", 2)
    assert row["path"].endswith(f"{row['subject']}_{row['image_id']}_{row['eye']}_c.png")


def test_visob_other_nesting_and_case(tmp_path, visob_root):
    # A copy without the doubled folder and with upper-case phone names reads the same images.
    src = visob_root / "oppo_dim_short" / "oppo_dim_short"
    dst = tmp_path / "v" / "OPPO_Dim_Light"
    shutil.copytree(src, dst)
    frame = load_dataset(tmp_path / "v").frame
    assert set(frame["phone"]) == {"oppo"} and set(frame["light"]) == {"dim_light"}
    assert len(frame) == len(list(src.rglob("*.png")))


def test_visob_bad_file_names_and_folders(tmp_path, visob_root):
    root = tmp_path / "v"
    shutil.copytree(visob_root / "iphone_office_short", root / "iphone_office_short")
    bad = root / "iphone_office_short" / "iphone_office_short" / "enrollments_rgb" / "eye.png"
    Image.new("RGB", (8, 8)).save(bad)
    with pytest.raises(DatasetError, match="do not follow VISOB"):
        load_dataset(root)
    bad.unlink()
    shutil.move(root / "iphone_office_short" / "iphone_office_short", root / "iphone_office_short" / "mystery")
    shutil.move(root / "iphone_office_short", root / "mystery_short")
    with pytest.raises(DatasetError, match="cannot tell phone and lighting"):
        load_dataset(root)


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DatasetError, match="none of the supported layouts.*VISOB.*UFPR.*generic"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown layout"):
        load_dataset(tmp_path / "empty", layout="casia")


def test_ufpr_fields_and_official_split(ufpr_root):
    dataset = load_dataset(ufpr_root)
    assert dataset.layout == "ufpr"
    assert set(dataset.frame["session"]) == {1, 2, 3}
    assert dataset.frame.iloc[0]["subject"] == "C0001"
    split = make_split(dataset, protocol="open_world_valopen", fold=1)
    assert split.pairs is not None and split.pairs["genuine"].any() and not split.pairs["genuine"].all()
    listed = pd.read_csv(ufpr_root / "experimentalProtocol/open_world_valopen/test_fold1.txt", sep=" ", header=None)
    assert sorted(split.test["path"].map(lambda p: p.rsplit("/", 1)[-1])) == sorted(listed[0])


def test_ufpr_open_world_valopen_fold1_ranges(tmp_path):
    ranges = {"train": (1, 500), "val": (501, 748), "test": (749, 1122)}
    root = make_ufpr(tmp_path / "u", subjects=1122, sessions=1, images_per_session=1, ranges=ranges, pairs=False,
                     tiny=True)
    split = make_split(load_dataset(root), protocol="open_world_valopen", fold=1)
    for part, (first, last) in ranges.items():
        subjects = sorted(getattr(split, part)["subject"].unique())
        assert subjects == [f"C{s:04d}" for s in range(first, last + 1)], part
    assert split.num_classes == 1000  # 500 subjects x 2 eyes


def test_ufpr_protocol_naming_missing_images(tmp_path):
    root = make_ufpr(tmp_path / "u", subjects=6, sessions=1, images_per_session=1, tiny=True, pairs=False)
    (root / "periocularCropped" / "C0006S1I01R.jpg").unlink()
    with pytest.raises(DatasetError, match="names 1 images that are not in"):
        load_dataset(root)


def test_ufpr_without_protocols_falls_back_and_says_so(tmp_path):
    root = make_ufpr(tmp_path / "u", subjects=8, sessions=2, images_per_session=1, protocols=False)
    data = prepare_data({"root": str(root), "protocol": "open_world_valopen", "image_size": [16, 24]})
    assert data.split.protocol == "subject"
    assert any("seeded subject-independent split" in note for note in data.notes)


def test_closed_world_overlap_is_refused(tmp_path):
    root = make_ufpr(tmp_path / "u", subjects=6, sessions=1, images_per_session=2, tiny=True, pairs=False,
                     ranges={"train": (1, 6), "val": (1, 6), "test": (1, 6)})
    shutil.move(root / "experimentalProtocol/open_world_valopen", root / "experimentalProtocol/closed_world")
    dataset = load_dataset(root)
    with pytest.raises(IdentityOverlapError, match="subject-independent"):
        make_split(dataset, protocol="closed_world", fold=1)
    assert len(make_split(dataset, protocol="closed_world", fold=1, allow_overlap=True).test) > 0


def test_generic_layouts(tmp_path):
    for s in range(3):
        (tmp_path / "flat" / f"p{s}").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (s * 40, i, 0)).save(tmp_path / "flat" / f"p{s}" / f"img{i}_L.png")
            (tmp_path / "sess" / f"p{s}" / f"{i + 1}").mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "sess" / f"p{s}" / f"{i + 1}" / "a.jpg")
    flat = load_dataset(tmp_path / "flat")
    assert flat.layout == "generic" and len(flat.frame) == 6 and set(flat.frame["eye"]) == {"l"}
    sessions = load_dataset(tmp_path / "sess")
    assert set(sessions.frame["session"]) == {1, 2}
    (tmp_path / "sess" / "p0" / "stray.png").write_bytes((tmp_path / "sess" / "p0" / "1" / "a.jpg").read_bytes())
    with pytest.raises(DatasetError, match="mixes images and session folders"):
        load_dataset(tmp_path / "sess")


def test_corrupt_images_error_or_skip_but_never_silent(tmp_path, visob_root):
    root = tmp_path / "v"
    shutil.copytree(visob_root, root)
    victim = next(root.rglob("*.png"))
    victim.write_bytes(b"not a png")
    dataset = load_dataset(root)
    with pytest.raises(CorruptImageError, match=f"1 image files could not be decoded: {victim}"):
        build_image_store(dataset.frame, (16, 24))
    store = build_image_store(dataset.frame, (16, 24), on_corrupt="skip")
    assert list(store.corrupt["path"]) == [str(victim)] and len(store.frame) == len(dataset.frame) - 1
    data = prepare_data({"root": str(root), "image_size": [16, 24], "on_corrupt": "skip"})
    assert any("1 corrupt images skipped" in note for note in data.notes)
    assert str(victim) not in set(data.split.train["path"]) | set(data.split.test["path"])
    with pytest.raises(ValueError, match="unknown on_corrupt"):
        build_image_store(dataset.frame, (16, 24), on_corrupt="ignore")
    cache = tmp_path / "cache"  # the cached store (decoded by two worker processes, then reused) holds the same images
    with pytest.raises(CorruptImageError):
        build_image_store(dataset.frame, (16, 24), cache_dir=cache, workers=2, chunk=8)
    assert not list(cache.iterdir()), "a failed build leaves no temporary or half-written cache file"
    cached = build_image_store(dataset.frame, (16, 24), cache_dir=cache, on_corrupt="skip", workers=2, chunk=8)
    reused = build_image_store(dataset.frame, (16, 24), cache_dir=cache, on_corrupt="skip")
    assert reused.decode_seconds == 0 and list(reused.corrupt["path"]) == [str(victim)]
    for built in (cached, reused):
        assert built.frame.equals(store.frame) and np.array_equal(np.asarray(built.pixels), store.pixels)
    with pytest.raises(CorruptImageError):
        build_image_store(dataset.frame, (16, 24), cache_dir=cache)  # the cache remembers what failed


def test_identities_with_too_few_images_are_excluded_and_reported(tmp_path, visob_root):
    root = tmp_path / "v"
    shutil.copytree(visob_root, root)
    subject = load_dataset(root).frame["subject"].iloc[0]
    for path in root.rglob(f"{subject}_*_r_c.png"):
        if "verifications_rgb" in str(path):
            path.unlink()
    split = make_split(load_dataset(root))
    assert f"{subject}_r" in set(split.excluded["identity"])
    assert "only one session" in split.excluded.set_index("identity").loc[f"{subject}_r", "reason"]
    assert f"{subject}_r" not in set(pd.concat([split.train, split.val, split.test])["identity"])


def test_image_store_cache_is_reused(tmp_path, visob_root):
    frame = load_dataset(visob_root).frame
    first = build_image_store(frame, (16, 24), cache_dir=tmp_path)
    again = build_image_store(frame, (16, 24), cache_dir=tmp_path)
    assert again.decode_seconds == 0 and isinstance(again.pixels, np.memmap)
    assert np.array_equal(np.asarray(again.pixels), first.pixels)


def test_ufpr_validation_test_overlap_is_refused(tmp_path):
    root = make_ufpr(tmp_path / "u", subjects=8, sessions=1, images_per_session=2, tiny=True, pairs=False,
                     ranges={"train": (1, 4), "val": (5, 7), "test": (6, 8)})
    with pytest.raises(IdentityOverlapError, match="validation and test"):
        make_split(load_dataset(root), protocol="open_world_valopen", fold=1)
