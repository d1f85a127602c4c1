"""Subject attributes: VISOB's gender.json, UFPR's protocol columns, a generic CSV, the synthetic groups, bad tables."""
from __future__ import annotations

import json
import shutil

import pytest

from ocular_utils.data import DatasetError, load_dataset
from ocular_utils.data.attributes import ATTRIBUTE_FILE
from ocular_utils.data.synthetic import SyntheticConfig, synthetic_groups

from .fixtures import make_ufpr


def test_synthetic_groups_come_with_the_generated_data(visob_root):
    dataset = load_dataset(visob_root)
    rows = synthetic_groups(SyntheticConfig(subjects=10, seed=3))
    groups = {(r["subject"], r["attribute"]): r["value"] for r in rows}
    assert sorted(dataset.attributes.columns) == ["eyelid opening (synthetic)", "skin tone (synthetic)"]
    assert dataset.attributes.index.tolist() == dataset.subjects
    for subject, row in dataset.attributes.iterrows():
        assert row["skin tone (synthetic)"] == groups[(subject, "skin tone (synthetic)")]
    assert set(dataset.attributes["skin tone (synthetic)"]) <= {"lighter", "medium", "darker"}
    assert any(ATTRIBUTE_FILE in note for note in dataset.notes)


def test_visob_gender_json_is_read_and_checked(tmp_path, visob_root):
    root = tmp_path / "visob"
    shutil.copytree(visob_root, root)
    subjects = load_dataset(root).subjects
    (root / "gender.json").write_text(json.dumps({s: "F" if k % 2 else "M" for k, s in enumerate(subjects[:-1])}))
    attributes = load_dataset(root).attributes
    assert attributes.loc[subjects[0], "gender"] == "M" and attributes.loc[subjects[1], "gender"] == "F"
    assert attributes["gender"].isna().sum() == 1  # a subject the table does not name has no value
    (root / "gender.json").write_text(json.dumps({subjects[0]: "M", "0007": "F"}))
    with pytest.raises(DatasetError, match=r"gender\.json: key '0007': subject '0007' is not in the data set"):
        load_dataset(root)
    (root / "gender.json").write_text("{not json")
    with pytest.raises(DatasetError, match="gender.json: not valid JSON"):
        load_dataset(root)


def test_ufpr_protocol_columns_give_gender_and_device(tmp_path):
    dataset = load_dataset(make_ufpr(tmp_path / "ufpr", subjects=10, tiny=True))
    assert sorted(dataset.attributes.columns) == ["device (probably)", "gender"]
    assert dataset.attributes.loc["C0003", "gender"] == "1" and dataset.attributes.loc["C0004", "gender"] == "0"
    assert dataset.attributes.loc["C0009", "device (probably)"] == "2"
    assert any("'age group (probably)' has one value" in note for note in dataset.notes)


def test_ufpr_subject_with_two_genders_names_the_file_and_line(tmp_path):
    root = make_ufpr(tmp_path / "ufpr", subjects=10, tiny=True)
    path = root / "experimentalProtocol" / "open_world_valopen" / "train_fold1.txt"
    lines = path.read_text().splitlines()
    fields = lines[1].split()
    fields[3] = "0" if fields[3] == "1" else "1"
    lines[1] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"train_fold1\.txt line 2: subject 'C0001' has two values for "
                                           r"attribute 'gender'"):
        load_dataset(root)


def _generic(tmp_path, subjects=("anna", "ben", "cleo")):
    root = tmp_path / "generic"
    shutil.copytree(make_ufpr(tmp_path / "u", subjects=1, tiny=True) / "periocularCropped", root / subjects[0])
    for subject in subjects[1:]:
        shutil.copytree(root / subjects[0], root / subject)
    return root


def test_generic_csv_and_its_bad_rows(tmp_path):
    root = _generic(tmp_path)
    table = root / ATTRIBUTE_FILE
    table.write_text("subject,attribute,value\nanna,hand,left\nben,hand,right\ncleo,hand,right\nanna,age,30s\n"
                     "ben,age,40s\n")
    attributes = load_dataset(root).attributes
    assert attributes.loc["anna", "hand"] == "left" and attributes.loc["cleo", "age"] != attributes.loc["cleo", "age"]
    elsewhere = tmp_path / "groups.csv"
    elsewhere.write_text("subject,attribute,value\nanna,site,A\nben,site,B\n")
    assert list(load_dataset(root, attributes=elsewhere).attributes.columns) == ["site"]
    cases = {
        "subject,attribute,value\nanna,hand,left\nzoe,hand,right\n": r"line 3: subject 'zoe' is not in the data set",
        "subject,attribute,value\nanna,hand,left\nben,hand,right\nanna,hand,right\n":
            r"line 4: subject 'anna' has two values for attribute 'hand': 'left' \(line 2\) and 'right'",
        "subject,attribute,value\nanna,hand,left\nben,hand,left\n": r"line 2: attribute 'hand' has one value only",
        "subject,group\nanna,a\n": r"header is subject,group; expected subject,attribute,value",
        "subject,attribute,value\nanna,hand,\nben,hand,right\n": r"line 2: empty value for subject 'anna'",
    }
    for text, message in cases.items():
        table.write_text(text)
        with pytest.raises(DatasetError, match=message):
            load_dataset(root)
    with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
        load_dataset(root, attributes=tmp_path / "missing.csv")
