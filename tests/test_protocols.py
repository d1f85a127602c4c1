"""Subject-independent splits and verification trials."""
import numpy as np
import pandas as pd
import pytest

from ocular_utils.data import load_dataset
from ocular_utils.data.protocols import (
    IdentityOverlapError,
    assign_identities,
    build_trials,
    check_disjoint,
    make_split,
)


def test_split_is_disjoint_seeded_and_labelled(visob_root):
    dataset = load_dataset(visob_root)
    a, b = make_split(dataset, seed=5), make_split(dataset, seed=5)
    c = make_split(dataset, seed=6)
    parts = [set(a.train["subject"]), set(a.val["subject"]), set(a.test["subject"])]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == 10
    assert a.test["subject"].tolist() == b.test["subject"].tolist()
    assert set(a.test["subject"]) != set(c.test["subject"])
    assert sorted(a.train["label"].unique()) == list(range(a.num_classes)) and a.num_classes == 2 * len(parts[0])


def test_overlap_guard():
    frame = pd.DataFrame({"subject": ["1", "2"]})
    with pytest.raises(IdentityOverlapError, match="share 1 subjects"):
        check_disjoint(frame, pd.DataFrame({"subject": ["2", "3"]}))


def test_merged_eyes_mirror_the_left_eye(visob_root):
    frame = assign_identities(load_dataset(visob_root).frame, "merged")
    assert (frame["identity"] == frame["subject"]).all()
    assert (frame["flip"] == (frame["eye"] == "l")).all()
    with pytest.raises(ValueError, match="unknown eyes mode"):
        assign_identities(frame, "both")


def test_trials_cross_session_same_eye(visob_root):
    split = make_split(load_dataset(visob_root), seed=0)
    test = split.test
    trials = build_trials(test, eyes="separate")
    probe, ref = test.iloc[trials["probe"]].reset_index(), test.iloc[trials["reference"]].reset_index()
    assert (probe["session"] == 2).all() and (ref["session"] == 1).all()
    assert (probe["eye"] == ref["eye"]).all()
    assert ((probe["identity"] == ref["identity"]) == trials["genuine"]).all()
    n_id = test["identity"].nunique()
    per_identity = len(test) // n_id // 2  # images per identity and session
    assert trials["genuine"].sum() == n_id * per_identity ** 2
    assert trials["same_phone"].any() and (~trials["same_phone"]).any()
    capped = build_trials(test, eyes="separate", max_impostors=100, seed=1)
    assert (~capped["genuine"]).sum() == 100 and capped["genuine"].sum() == trials["genuine"].sum()
    merged = build_trials(assign_identities(test, "merged"), eyes="merged")
    assert len(merged) > len(trials)


def test_single_session_uses_all_pairs():
    frame = pd.DataFrame({"subject": list("aabb"), "identity": list("aabb"), "eye": ["u"] * 4, "session": [1] * 4,
                          "phone": [""] * 4, "light": [""] * 4})
    trials = build_trials(frame, eyes="separate")
    assert len(trials) == 6 and trials["genuine"].sum() == 2
    assert trials["same_phone"].isna().all()
    assert np.all(trials["probe"] < trials["reference"])
