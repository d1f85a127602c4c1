"""The verdicts that set the paper's findings against ours, on hand-made models scored on one trial list."""
import numpy as np
import pandas as pd
import pytest

from ocular_utils.report import comparison, verdicts
from ocular_utils.report.plots import pareto_front

SUBJECTS = np.repeat(np.arange(60), 40)
GENUINE = np.tile(np.arange(40) < 8, 60)
REFERENCE = np.where(GENUINE, SUBJECTS, (SUBJECTS + 1 + np.arange(len(SUBJECTS)) % 59) % 60)
NOISE = np.random.default_rng(0).normal(size=len(GENUINE))
MARGIN = 1.0


def scores(separation: float, jitter: float = 0.0, seed: int = 0) -> dict:
    """Trial scores of a model whose genuine scores sit ``separation`` above the impostors.

    The noise is shared with every other model, except a share ``jitter`` of its variance that is the model's own.
    """
    own = np.random.default_rng(seed).normal(size=len(GENUINE))
    noise = np.sqrt(1 - jitter) * NOISE + np.sqrt(jitter) * own
    return {"scores": noise + separation * GENUINE, "genuine": GENUINE, "probe_subject": SUBJECTS.astype(str),
            "reference_subject": REFERENCE.astype(str), "trial_list": "same"}


def eer_of(score: dict) -> float:
    from ocular_utils.verification.metrics import eer

    return eer(score["scores"][GENUINE], score["scores"][~GENUINE])


class Study:
    """Hand-made models: rows of a models table and their scores at each look (B/2, B, 2B)."""

    def __init__(self):
        self.rows, self.scores = [], {}

    def add(self, label, separation, seed=0, at_double=None, jitter=0.0, validation_eer=0.1, **row):
        run = f"{label}-seed{seed}-{row.get('role', 'grid')}"
        looks = {"B/2": scores(separation - 0.05, jitter, 1), "B": scores(separation, jitter, 2),
                 "2B": scores(separation if at_double is None else at_double, jitter, 3)}
        self.scores |= {(run, look): s for look, s in looks.items()}
        defaults = dict(label=label, run_dir=run, seed=seed, eer=eer_of(looks["B"]), training_images=3072,
                        validation_eer=validation_eer, method=None, requested_compression=np.nan, student=None,
                        kd_loss=None, median_ms=79.0, role="grid")
        self.rows.append(defaults | row)

    def models(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def study(layer8=2.5, gradient8=1.5, base=2.5, layer16=1.0, student=3.5, student_ms=5.0, drop=()):
    """A study in which the paper's findings hold by default (separations: higher is better)."""
    s = Study()
    s.add("resnet50 (base)", base, family="base", kind="base", compression=1.0, training_images=19200, role=None)
    for method, separation8 in (("layer_weight", layer8), ("global_gradient", gradient8), ("random", 0.5)):
        for ratio in (2, 4, 8, 16):
            if (method, ratio) in drop:
                continue
            separation = separation8 if ratio == 8 else (layer16 if ratio == 16 else base)
            s.add(f"{method} {ratio}x", separation, family="unstructured pruning", kind="prune", method=method,
                  requested_compression=float(ratio), compression=float(ratio))
    for loss, shift, val in (("logit", 0.0, 0.1), ("embedding", -0.3, 0.2)):
        s.add(f"mobilenet_v2 ({loss})", student + shift, family="KD student", kind="distill", student="mobilenet_v2",
              kd_loss=loss, compression=9.0, median_ms=student_ms, validation_eer=val)
    s.add("mobilenet_v2 (logit, base + B images)", student, family="KD student", kind="distill",
          student="mobilenet_v2", kd_loss="logit", compression=9.0, median_ms=student_ms, role="total",
          training_images=19200 + 3072)
    return s


def verdicts_of(s: Study, replicates=200, margin=MARGIN):
    models = s.models()
    frame, missing = comparison.paired_comparisons(models, replicates=replicates, scores=s.scores)
    table = verdicts.paper_verdicts(frame, missing, models, margin, 3072)
    return frame, table, dict(zip(table["key"], table["verdict"]))


def test_paper_agreeing_models_agree_with_their_statistics():
    frame, table, v = verdicts_of(study())
    assert v == {"best_method": "agree", "best_ratio": "agree", "kd_accuracy": "agree", "kd_after_base": "agree",
                 "kd_time": "agree"}
    kd = frame[frame["finding"] == "kd_accuracy"]
    assert set(kd["b"]) == {"layer_weight 8x", "global_gradient 8x", "random 8x"}, "partners at 8x (9x / 1.5)"
    assert kd["matched"].all(), "students at the base's images + B match their pruned partners' total"
    row = table[table["key"] == "best_method"].iloc[0]
    assert "intersection-union" in row["rule"] and "statistics" not in table, "each comparison's are in `frame`"
    best = frame[frame["finding"] == "best_method"]
    assert np.isfinite(best[["B difference", "2B difference", "B p", "2B p"]].to_numpy(float)).all()
    assert row["settled"] == "2 of 2 comparisons settled at B and 2B"


def test_disagreements_need_settled_differences_against_the_paper():
    _, table, v = verdicts_of(study(layer8=1.5, gradient8=2.5, base=3.5, layer16=0.5, student=0.5, student_ms=200.0))
    assert v["best_method"] == "disagree" and v["kd_accuracy"] == "disagree" and v["kd_time"] == "disagree"
    timing = table.set_index("key").loc["kd_time"]
    assert "200.00 ms against" in timing["reason"] and "%" in timing["reason"], "the latency verdict shows its numbers"
    assert v["best_ratio"] == "disagree", "every ratio is worse than the base"


def test_a_missing_headline_row_is_named_not_replaced_by_the_next_row():
    """Rows are chosen by ratio: without layer_weight at 8x, 16x must not stand in for it."""
    _, table, v = verdicts_of(study(drop=[("layer_weight", 8)]))
    assert v["best_method"] == "inconclusive" and v["best_ratio"] == "inconclusive"
    reasons = " ".join(table["reason"])
    assert "no layer_weight run at 8x" in reasons


def test_no_significant_difference_is_not_non_inferiority():
    """8x - base not significant, but its interval reaches past the margin: not 'no worse', so not 'agree'."""
    s = study()
    s.rows = [r for r in s.rows if r["label"] != "layer_weight 8x"]
    s.add("layer_weight 8x", 2.5, jitter=0.9, family="unstructured pruning", kind="prune", method="layer_weight",
          requested_compression=8.0, compression=8.0)
    frame, _, v = verdicts_of(s, margin=0.5)
    row = frame[(frame["finding"] == "best_ratio") & (frame["ratio"] == 8)].iloc[0]
    assert row["B low"] < 0 < row["B high"], "the difference is not significant"
    assert row["B high90"] > 0.5, "but it is not shown to be within the margin either"
    assert v["best_ratio"] == "inconclusive"


def _lower_rows(p_values, sign=-1.0):
    rows = []
    for k, p in enumerate(p_values):
        rows.append({"finding": "kd_accuracy", "group": "student", "claim": "lower", "a": "student", "b": f"m{k}",
                     "ratio": np.nan, "budget a": 3072, "budget b": 3072, "matched": True, "a moved": 0.0,
                     "b moved": 0.0, "seeds": 1, "seed mean": np.nan, "seed low": np.nan, "seed high": np.nan,
                     "change": 0.0, "change low90": -0.1, "change high90": 0.1}
                    | {f"{look} {f}": v for look in ("B", "2B") for f, v in
                       (("difference", sign * 1.0), ("low", sign * 1.9 if sign > 0 else -1.9),
                        ("high", 0.1 if sign > 0 else -0.1), ("p", p), ("high90", -0.2))})
    frame = pd.DataFrame(rows)
    frame["B p_holm"] = frame["2B p_holm"] = [min(1, p * len(p_values)) for p in p_values]
    return frame


def test_beating_every_partner_is_an_intersection_union_test_not_holm():
    frame = _lower_rows([0.03] * 4)  # Holm would make each 0.12
    table = verdicts.paper_verdicts(frame, [], pd.DataFrame(), MARGIN, 3072)
    assert table.set_index("key").loc["kd_accuracy", "verdict"] == "agree"


def test_worse_than_any_partner_takes_holm():
    frame = _lower_rows([0.03] * 4, sign=+1.0)  # raw p 0.03, Holm 0.12: not a settled disagreement
    frame["B low"] = frame["2B low"] = 0.1
    table = verdicts.paper_verdicts(frame, [], pd.DataFrame(), MARGIN, 3072)
    assert table.set_index("key").loc["kd_accuracy", "verdict"] == "inconclusive"


def test_students_are_chosen_on_validation_not_test_eer():
    s = study()
    # the embedding version has the lower *test* EER, the logit version the lower validation EER
    s.rows = [r for r in s.rows if r["label"] != "mobilenet_v2 (embedding)"]
    s.add("mobilenet_v2 (embedding)", 4.0, family="KD student", kind="distill", student="mobilenet_v2",
          kd_loss="embedding", compression=9.0, median_ms=1.0, validation_eer=0.3)
    frame, table, _ = verdicts_of(s)
    after_base = frame[frame["finding"] == "kd_after_base"]
    assert set(after_base["a"]) == {"mobilenet_v2 (logit)"}
    assert "mobilenet_v2 (logit)" in table.set_index("key").loc["kd_time", "on"], "latency verdict: validation too"


def test_a_comparison_must_hold_at_twice_the_budget():
    s = study()
    s.rows = [r for r in s.rows if r["label"] != "global_gradient 8x"]
    # better than layer_weight at B, no longer at 2B: the comparison is unsettled and the mover named
    s.add("global_gradient 8x", 2.0, at_double=3.5, family="unstructured pruning", kind="prune",
          method="global_gradient", requested_compression=8.0, compression=8.0)
    models = s.models()
    frame, missing = comparison.paired_comparisons(models, replicates=200, scores=s.scores)
    frame.loc[frame["b"] == "global_gradient 8x", "b moved"] = -3.0  # what its record says it moved
    table = verdicts.paper_verdicts(frame, missing, models, MARGIN, 3072).set_index("key")
    assert table.loc["best_method", "verdict"] == "inconclusive"
    assert "global_gradient 8x -3.00 points" in table.loc["best_method", "still moving"]
    assert "budget.images >= 12,288" in table.loc["best_method", "still moving"]


def test_seeds_that_disagree_block_a_finding():
    s = study()
    for seed, separation in ((1, 1.0), (2, 3.0)):  # layer_weight 8x over seeds: sometimes worse than gradient
        s.add("layer_weight 8x", separation, seed=seed, family="unstructured pruning", kind="prune",
              method="layer_weight", requested_compression=8.0, compression=8.0)
    frame, _, v = verdicts_of(s)
    row = frame[(frame["finding"] == "best_method") & (frame["b"] == "global_gradient 8x")].iloc[0]
    assert row["seeds"] == 3 and row["seed low"] < 0 < row["seed high"]
    assert v["best_method"] == "inconclusive"


def test_runs_on_different_trials_are_refused():
    s = study()
    s.scores[("random 8x-seed0-grid", "B")] = s.scores[("random 8x-seed0-grid", "B")] | {"trial_list": "other"}
    with pytest.raises(ValueError, match="different trial lists"):
        comparison.paired_comparisons(s.models(), replicates=20, scores=s.scores)


def test_fair_partners_are_within_one_and_a_half_times_the_size():
    from ocular_utils.core.study import fair_ratio

    grid = [2, 4, 8, 16, 32]
    assert fair_ratio(10.6, grid) == 8 and fair_ratio(2.1, grid) == 2
    assert fair_ratio(60, grid) is None, "far outside the grid: no partner"
    assert fair_ratio(4, [2, 8, 32]) is None, "the nearest ratio is twice away"


def test_seed_summary_and_primary_runs():
    s = study()
    s.add("layer_weight 8x", 2.51, seed=1, family="unstructured pruning", kind="prune", method="layer_weight",
          requested_compression=8.0, compression=8.0)
    models = s.models()
    summary = comparison.seed_summary(models)
    assert list(summary["model"]) == ["layer_weight 8x"] and (summary["seeds"] == 2).all()
    assert len(comparison.primary(models)) == len(models) - 1, "a student at base + B is a model of its own"


def test_pareto_front():
    points = pd.DataFrame({"cost": [1, 2, 3, 4], "eer": [0.3, 0.1, 0.2, 0.05]})
    assert list(pareto_front(points, "cost")["cost"]) == [1, 2, 4]
