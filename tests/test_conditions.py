"""EER by capture condition and by subject group, and paired changes of both (issue 23)."""
import numpy as np
import pandas as pd
import pytest

from ocular_utils.verification import conditions, subsets
from ocular_utils.verification.metrics import eer


def _trials(subjects: int = 8, images: int = 4, seed: int = 0):
    """Hand-made test images (two phones, two lights) and every cross-image trial between them."""
    rng = np.random.default_rng(seed)
    rows = [{"subject": f"s{s}", "phone": "iphone" if k % 2 else "note", "light": "day" if k < 2 else "office",
             "session": 1 + k % 2} for s in range(subjects) for k in range(images)]
    frame = pd.DataFrame(rows)
    probe, reference = np.triu_indices(len(frame), 1)
    trials = pd.DataFrame({"probe": probe, "reference": reference})
    trials["probe_subject"] = frame["subject"].to_numpy()[probe]
    trials["reference_subject"] = frame["subject"].to_numpy()[reference]
    trials["genuine"] = trials["probe_subject"] == trials["reference_subject"]
    scores = np.where(trials["genuine"], 0.7, 0.3) + rng.normal(0, 0.15, len(trials))
    return frame, trials, scores


def _score_file(frame, trials, scores):
    return {"scores": np.asarray(scores, float), "genuine": trials["genuine"].to_numpy(), "trial_list": "t",
            "probe_subject": trials["probe_subject"].to_numpy(str),
            "reference_subject": trials["reference_subject"].to_numpy(str), **conditions.condition_codes(frame, trials)}


def test_codes_are_compact_and_give_the_condition_subsets():
    frame, trials, scores = _trials()
    codes = conditions.condition_codes(frame, trials)
    assert codes["probe_conditions"].dtype == np.int16 and codes["probe_conditions"].shape == (len(trials), 3)
    assert list(codes["condition_names"]) == ["phone", "light", "session"]
    masks = conditions.condition_masks(_score_file(frame, trials, scores))
    phone = frame["phone"].to_numpy()
    same_phone = phone[trials["probe"]] == phone[trials["reference"]]
    assert (masks["same phone"] == same_phone).all() and (masks["cross phone"] == ~same_phone).all()
    light = frame["light"].to_numpy()
    pair = {tuple(sorted(p)) for p in zip(light[trials["probe"]], light[trials["reference"]])}
    assert {f"light {a} / {b}" for a, b in pair} <= set(masks)
    assert masks["light day / office"].sum() + masks["same light"].sum() == len(trials)


def test_per_condition_eer_on_hand_made_trials():
    frame, trials, scores = _trials(subjects=10)
    score_file = _score_file(frame, trials, scores)
    masks = conditions.condition_masks(score_file)
    table = subsets.subset_metrics(score_file, masks, replicates=100).set_index("subset")
    for name in ("same phone", "cross phone"):
        mask, genuine = masks[name], trials["genuine"].to_numpy()
        expected = eer(scores[mask & genuine], scores[mask & ~genuine])
        assert table.loc[name, "eer"] == pytest.approx(expected, abs=1e-9)
        assert table.loc[name, "eer ci_low"] <= table.loc[name, "eer"] <= table.loc[name, "eer ci_high"]
    lonely = {"one subject": (trials["probe_subject"] == "s0").to_numpy() & (trials["reference_subject"] == "s0")}
    assert subsets.subset_metrics(score_file, lonely, replicates=20).loc[0, "note"] == "too few subjects"


def test_the_paired_change_of_a_gap_sees_a_shift_of_one_group():
    frame, trials, scores = _trials(subjects=16, seed=1)
    groups = pd.Series({f"s{s}": "A" if s < 8 else "B" for s in range(16)})
    base = _score_file(frame, trials, scores)
    masks = conditions.group_masks(base, groups)
    same = subsets.paired_gap_change(base, base, masks, replicates=200)
    assert same.difference == 0 and same.ci_low == 0 and same.ci_high == 0
    in_b = trials["probe_subject"].isin(groups.index[groups == "B"]) & trials["reference_subject"].isin(
        groups.index[groups == "B"])
    shifted = np.where(in_b & ~trials["genuine"], scores + 0.25, scores)  # group B's impostors look alike
    worse = subsets.paired_gap_change(_score_file(frame, trials, shifted), base, masks, replicates=200)
    gap = subsets.gap_metric(masks)
    ones = np.ones(len(trials))
    expected = gap(shifted, base["genuine"], ones) - gap(scores, base["genuine"], ones)
    assert worse.difference == pytest.approx(expected) and worse.difference > 0.05
    assert worse.ci_low > 0, "the shift of one group's scores must widen the gap beyond the interval"
    changes = subsets.paired_subset_changes(_score_file(frame, trials, shifted), base, masks, replicates=200)
    changes = changes.set_index("subset")
    assert changes.loc["A", "change"] == 0 and changes.loc["B", "ci_low"] > 0
    assert (changes["p_holm"] >= changes["p"]).all()


def test_groups_with_one_subject_and_files_without_conditions_are_refused():
    frame, trials, scores = _trials(subjects=6)
    score_file = _score_file(frame, trials, scores)
    groups = pd.Series({f"s{s}": "A" if s else "B" for s in range(6)})
    with pytest.raises(ValueError, match="too few subjects"):
        subsets.paired_gap_change(score_file, score_file, conditions.group_masks(score_file, groups), 20)
    old = {k: v for k, v in score_file.items() if "condition" not in k}
    with pytest.raises(ValueError, match="keeps no capture conditions"):
        conditions.condition_masks(old)


@pytest.mark.parametrize("rounding, cell, subjects", [(None, None, 9), (1, None, 9), (2, 3, 9), (None, 2, 9),
                                                     (None, 1, 4), (1, 1, 4)])
def test_pair_curves_read_every_draw_exactly_as_weighting_every_trial(rounding, cell, subjects):
    """The grid-and-cell reading of a curve gives, draw by draw, the EER and TAR of ErrorCurve with the trial
    weights of that draw, ties in the scores (flat stretches of the curve) included."""
    from ocular_utils.verification.metrics import ErrorCurve
    from ocular_utils.verification.pair_curves import PairCurve

    rng = np.random.default_rng(3)
    subject = np.repeat(np.arange(subjects), 5)
    a, b = np.triu_indices(len(subject), 1)
    probe, reference = subject[a], subject[b]
    genuine = probe == reference
    scores = np.where(genuine, 1.0, 0.0) + rng.normal(0, 0.8, len(a))
    scores = np.round(scores, rounding) if rounding else scores
    impostor_pair = np.where(genuine, -1, probe * subjects + reference)
    curve = PairCurve(scores, genuine, np.where(genuine, probe, -1), impostor_pair, subjects, subjects * subjects, cell)
    counts = np.stack([np.bincount(rng.integers(0, subjects, subjects), minlength=subjects) for _ in range(400)])
    eers, tars = curve.read(counts.T.astype(float),
                            (counts[:, :, None] * counts[:, None, :]).reshape(len(counts), -1).T.astype(float), 0.05)
    exact = ErrorCurve(scores[genuine], scores[~genuine])
    for draw, (eer_value, tar_value) in enumerate(zip(eers, tars)):
        weights = np.where(genuine, counts[draw, probe], counts[draw, probe] * counts[draw, reference]).astype(float)
        if weights[genuine].sum() == 0 or weights[~genuine].sum() == 0:
            assert np.isnan(eer_value)
            continue
        assert eer_value == pytest.approx(exact.eer(weights[genuine], weights[~genuine])[0], abs=1e-12)
        assert tar_value == pytest.approx(exact.tar_at_far(0.05, weights[genuine], weights[~genuine]), abs=1e-12)
