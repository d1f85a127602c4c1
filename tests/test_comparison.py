"""The verdicts that set the paper's findings against ours, on hand-made models scored on one trial list."""
import numpy as np
import pandas as pd
import pytest

from ocular_utils.report import comparison
from ocular_utils.report.plots import pareto_front

SUBJECTS = np.repeat(np.arange(60), 40).astype(str)
GENUINE = np.tile(np.arange(40) < 8, 60)
NOISE = np.random.default_rng(0).normal(size=len(GENUINE))


def scores(separation: float, jitter_seed: int | None = None) -> dict:
    """Trial scores of a model whose genuine scores sit ``separation`` above the impostors (shared noise)."""
    jitter = 0 if jitter_seed is None else 0.05 * np.random.default_rng(jitter_seed).normal(size=len(GENUINE))
    return {"scores": NOISE + jitter + separation * GENUINE, "genuine": GENUINE, "subjects": SUBJECTS,
            "trial_list": "same"}


def eer_of(score: dict) -> float:
    from ocular_utils.verification.metrics import eer

    return eer(score["scores"][GENUINE], score["scores"][~GENUINE])


def table(layer8=2.5, gradient8=1.5, base=2.5, layer16=1.0, student=3.5, student_ms=5.0, converged=True):
    """Models (separations: higher is better) with their scores; the paper's findings hold by default."""
    rows, runs = [], {}

    def add(label, separation, seed=0, **row):
        run = f"{label}-seed{seed}"
        runs[run] = scores(separation, None if seed == 0 else seed)
        rows.append(dict(label=label, run_dir=run, seed=seed, eer=eer_of(runs[run]), training_images=3072,
                         converged=converged, validation_eer=0.1, method=None, requested=np.nan, student=None,
                         kd_loss=None, median_ms=79.0) | row)

    add("resnet50 (base)", base, family="base", kind="base", compression=1.0, training_images=19200, converged=None)
    for method, separation8 in (("layer_weight", layer8), ("global_gradient", gradient8), ("random", 0.5)):
        for ratio in (2, 4, 8, 16):
            separation = separation8 if ratio == 8 else (layer16 if ratio == 16 else 2.0)
            add(f"{method} {ratio}x", separation, family="unstructured pruning", kind="prune", method=method,
                requested=float(ratio), compression=float(ratio))
    add("layer_weight 8x", layer8 + 0.01, seed=1, family="unstructured pruning", kind="prune", method="layer_weight",
        requested=8.0, compression=8.0)
    add("mobilenet_v2 (logit)", student, family="KD student", kind="distill", student="mobilenet_v2",
        kd_loss="logit", compression=9.0, median_ms=student_ms)
    add("mobilenet_v2 (logit)", student + 0.01, seed=1, family="KD student", kind="distill", student="mobilenet_v2",
        kd_loss="logit", compression=9.0, median_ms=student_ms)
    return pd.DataFrame(rows), runs


def verdicts(models, runs):
    comparisons = comparison.paired_comparisons(models, replicates=200, scores=runs)
    return comparisons, comparison.paper_verdicts(comparisons, models).set_index("on")["verdict"]


def test_paper_agreeing_models_agree_with_their_statistics():
    models, runs = table()
    comparisons, v = verdicts(models, runs)
    assert list(v) == ["agree", "agree", "agree", "agree"]
    assert set(comparisons["finding"]) == {"best_method", "best_ratio", "kd_accuracy"}
    kd = comparisons[comparisons["finding"] == "kd_accuracy"]
    assert set(kd["b"]) == {"layer_weight 8x", "global_gradient 8x", "random 8x"}, "partners at 8x (9x / 1.5)"
    assert (kd["p_holm"] >= kd["p"]).all() and kd["finding holds"].all()
    text = comparison.paper_verdicts(comparisons, models).loc[0, "statistics"]
    assert "Holm p" in text and "budget 3,072 images" in text and "seed spread" in text


def test_disagreements_need_measured_differences_against_the_paper():
    models, runs = table(layer8=1.5, gradient8=2.5, base=3.5, student=0.5, student_ms=200.0)
    assert list(verdicts(models, runs)[1]) == ["disagree", "disagree", "disagree", "disagree"]


def test_unconverged_or_within_seed_spread_is_inconclusive():
    models, runs = table(converged=False)
    comparisons, v = verdicts(models, runs)
    assert list(v[:3]) == ["inconclusive"] * 3
    assert comparisons["why not"].str.contains("not converged").all()
    models, runs = table(layer8=1.52, gradient8=1.5)  # a 0.02 separation gap: below the seed spread
    comparisons, v = verdicts(models, runs)
    assert v.iloc[0] == "inconclusive"


def test_runs_on_different_trials_are_refused():
    models, runs = table()
    runs["random 8x-seed0"] = runs["random 8x-seed0"] | {"trial_list": "other"}
    with pytest.raises(ValueError, match="different trial lists"):
        comparison.paired_comparisons(models, replicates=20, scores=runs)


def test_fair_partners_are_within_one_and_a_half_times_the_size():
    grid = [2, 4, 8, 16, 32]
    assert comparison.fair_ratio(10.6, grid) == 8 and comparison.fair_ratio(2.1, grid) == 2
    assert comparison.fair_ratio(60, grid) is None, "far outside the grid: no partner"
    assert comparison.fair_ratio(4, [2, 8, 32]) is None, "the nearest ratio is twice away"


def test_seed_summary_and_primary_runs():
    models, _ = table()
    summary = comparison.seed_summary(models)
    assert list(summary["model"]) == ["layer_weight 8x", "mobilenet_v2 (logit)"] and (summary["seeds"] == 2).all()
    assert len(comparison.primary(models)) == len(models) - 2


def test_pareto_front():
    points = pd.DataFrame({"cost": [1, 2, 3, 4], "eer": [0.3, 0.1, 0.2, 0.05]})
    assert list(pareto_front(points, "cost")["cost"]) == [1, 2, 4]
