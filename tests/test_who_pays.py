"""The who-pays analysis over models: changes against the base and the parent, gaps that widen, the largest effect."""
import numpy as np
import pandas as pd

from ocular_utils.report import findings, who_pays

from .test_conditions import _score_file, _trials


def test_a_model_that_hurts_one_group_widens_the_gap_and_its_int8_child_changes_nothing(tmp_path):
    frame, trials, scores = _trials(subjects=16, seed=2)
    groups = pd.DataFrame({"group": {f"s{s}": "A" if s < 8 else "B" for s in range(16)}})
    in_b = trials["probe_subject"].isin([f"s{s}" for s in range(8, 16)]) & trials["reference_subject"].isin(
        [f"s{s}" for s in range(8, 16)])
    hurt = np.where(in_b & ~trials["genuine"], scores + 0.3, scores)
    rows = []
    for name, values, kind, parent in (("base", scores, "base", None), ("pruned", hurt, "prune", "base"),
                                       ("pruned int8", hurt, "quantize", "pruned")):
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        np.savez(folder / "scores.npz", **(_score_file(frame, trials, values) | {"trial_list": np.array("t")}))
        rows.append({"label": name, "family": kind, "kind": kind, "run_dir": str(folder), "parent": parent})
    analysis = who_pays.analyse(pd.DataFrame(rows), groups, replicates=300)
    gaps = analysis.gap_changes("base").set_index("model")
    assert gaps.loc["pruned", "widens"] and gaps.loc["pruned", "ci_low"] > 0
    assert gaps.loc["pruned", "change"] == gaps.loc["pruned int8", "change"]
    against_parent = analysis.condition_changes("parent")
    assert set(against_parent["model"]) == {"pruned int8"}  # the pruned model was made from the base
    assert (against_parent["change"] == 0).all() and not against_parent["paid"].any()
    changes = analysis.condition_changes("base")
    assert (changes["p_holm"] >= changes["p"]).all() and set(changes["condition"]) == set(analysis.conditions)
    found = findings.who_pays_findings(analysis, changes, analysis.gap_changes("base"), analysis.phone_ratios())
    assert found["pays_group_text"].startswith("pruned") and found["pays_widening_models"] == 2
    widest = analysis.largest_change("gap")
    assert widest["tests"] == 2 and widest["band_low"] > 0  # studentized band, wider than the percentile interval
    assert widest["band_high"] - widest["band_low"] > widest["ci_high"] - widest["ci_low"]
    assert widest["p_family"] <= 2 / 301 and "simultaneous 95% interval" in found["pays_group_text"]
    assert analysis.largest_change("condition")["tests"] == changes["p"].notna().sum()
    assert who_pays.trial_counts(analysis)["read"].eq("yes").all()
