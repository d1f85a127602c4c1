"""Table builders, the one-call loader of the chapters, and figures without side effects, on hand-made records."""
import matplotlib
import numpy as np
import pandas as pd
import pytest

from ocular_utils.core.records import Record, write_record
from ocular_utils.report import comparison, results, tables


def _metrics(eer, before=None):
    metrics = {"eer": eer, "eer ci_low": eer - 0.01, "eer ci_high": eer + 0.01, "tar@far=0.01": 1 - eer,
               "tar@far=0.001": 1 - 2 * eer}
    return metrics | ({"before.eer": before} if before is not None else {})


def _model(params, nonzero, sparse=False):
    model = {"params": params, "nonzero_params": nonzero, "macs": 10 * params, "nonzero_macs": 10 * nonzero,
             "deployed_dense_bytes": 4 * params}
    return model | ({"deployed_sparse_bytes": nonzero} if sparse else {})


@pytest.fixture()
def results_dir(tmp_path):
    records = {
        "base-1": Record("base", {}, family="base", backbone="resnet50", achieved_compression=1.0, seed=0,
                         training_images=1000, metrics=_metrics(0.05), model=_model(1000, 1000), synthetic=True),
        "lw8-2": Record("prune", {}, family="unstructured pruning", method="layer_weight", requested_compression=8,
                        achieved_compression=8.01, seed=0, training_images=64, metrics=_metrics(0.10, 0.4),
                        model=_model(1000, 125, sparse=True), timings={"finetune": 3.0}, synthetic=True,
                        still_improving=True),
        "lw8-seed1": Record("prune", {}, family="unstructured pruning", method="layer_weight",
                            requested_compression=8, achieved_compression=8.01, seed=1, training_images=64,
                            metrics=_metrics(0.11, 0.4), model=_model(1000, 125, sparse=True),
                            timings={"finetune": 3.0}, synthetic=True),
        "lw2-3": Record("prune", {}, family="unstructured pruning", method="layer_weight", requested_compression=2,
                        achieved_compression=2.0, seed=0, training_images=64, metrics=_metrics(0.06, 0.07),
                        model=_model(1000, 500, sparse=True), timings={"finetune": 2.0}, synthetic=True),
        "gg8-4": Record("prune", {}, family="unstructured pruning", method="global_gradient", requested_compression=8,
                        achieved_compression=8.0, seed=0, training_images=64, metrics=_metrics(0.08, 0.3),
                        model=_model(1000, 125, sparse=True), timings={"finetune": 3.5}, synthetic=True),
        "cm8-5": Record("prune", {}, family="channel pruning", method="channel_magnitude", requested_compression=8,
                        achieved_compression=7.9, seed=0, training_images=64, metrics=_metrics(0.2, 0.5),
                        model=_model(127, 127), timings={"finetune": 1.0}, synthetic=True),
        "mv-6": Record("distill", {}, family="student, no teacher", backbone="mobilenet_v2", student="mobilenet_v2",
                       kd_loss="none", achieved_compression=8.5, seed=0, training_images=800, metrics=_metrics(0.12),
                       model=_model(118, 118), timings={"train": 9.0}, synthetic=True),
        "mv-7": Record("distill", {}, family="KD student", backbone="mobilenet_v2", student="mobilenet_v2",
                       kd_loss="logit", achieved_compression=8.5, seed=0, training_images=800, metrics=_metrics(0.09),
                       model=_model(118, 118), timings={"train": 9.5}, synthetic=True),
    }
    for name, record in records.items():
        write_record(tmp_path / "runs" / name, record)
    pd.DataFrame([{"run": "base-1", "runtime": "eager", "input": "32x48", "median_ms": 20.0, "scope": "all models"},
                  {"run": "mv-7", "runtime": "eager", "input": "32x48", "median_ms": 4.0, "scope": "all models"},
                  {"run": "base-1", "runtime": "eager", "input": "224x224", "median_ms": 90.0,
                   "scope": "representative"},
                  {"run": "base-1", "runtime": "onnxruntime", "input": "32x48", "median_ms": 3.0,
                   "scope": "representative"}]).to_csv(tmp_path / "latency.csv", index=False)
    return tmp_path


def test_compression_table_is_typed_and_sorted(results_dir):
    grid = results.load_results(results_dir=results_dir).pruning
    assert list(zip(grid["method"], grid["requested_compression"])) == [
        ("channel_magnitude", 8.0), ("global_gradient", 8.0), ("layer_weight", 2.0), ("layer_weight", 8.0)]
    row = grid[(grid["method"] == "layer_weight") & (grid["requested_compression"] == 8)].iloc[0]
    assert row["label"] == "layer_weight 8x" and row["compression"] == 8.01 and row["eer_before_finetune"] == 0.4
    assert row["stored_bytes"] == 125 and row["deployed_dense_bytes"] == 4000 and row["finetune_seconds"] == 3.0
    channel = grid[grid["method"] == "channel_magnitude"].iloc[0]
    assert channel["stored_bytes"] == 4 * 127, "dense models are stored dense"


def test_student_and_model_tables(results_dir):
    loaded = results.load_results(results_dir=results_dir, latency_dir=results_dir)
    students = loaded.students
    assert list(students["loss"]) == ["logit", "none"] and list(students["label"]) == [
        "mobilenet_v2 (logit)", "mobilenet_v2 (none)"]
    models = loaded.models
    assert len(models) == 7 and loaded.synthetic and loaded.latency_input == "32x48"
    latency = models.set_index("run")["median_ms"]
    assert latency["base-1"] == 20.0 and latency["mv-7"] == 4.0 and pd.isna(latency["lw8-2"])
    assert loaded.base["backbone"] == "resnet50"
    budget = tables.budget_table(models)
    assert budget.loc["unstructured pruning", "runs"] == 3 and budget.loc["KD student", "most training images"] == 800
    assert budget.loc["unstructured pruning", "runs checked for improvement"] == 1 == budget.loc[
        "unstructured pruning", "still improving"]
    everything = loaded.all_models
    assert len(everything) == 8 and sorted(everything.loc[everything["label"] == "layer_weight 8x", "seed"]) == [0, 1]
    assert list(models.loc[models["label"] == "layer_weight 8x", "eer"]) == [0.10], "the grid's seed, once"
    genuine = np.tile(np.arange(10) < 3, 30)
    subjects = np.repeat(np.arange(30), 10).astype(str)
    noise = np.random.default_rng(0).normal(size=genuine.size)
    reference = np.where(genuine, subjects, np.roll(subjects, 10))
    scores = {students.loc[i, "run_dir"]: {"scores": noise + shift * genuine, "genuine": genuine,
                                          "probe_subject": subjects, "reference_subject": reference,
                                          "trial_list": "one"} for i, shift in ((0, 3.0), (1, 1.0))}
    effect = comparison.teacher_effect(students, replicates=100, scores=scores)
    assert effect.loc[0, "loss"] == "logit" and effect.loc[0, "change (points)"] < 0 and effect.loc[0, "Holm p"] < 0.05
    assert "median_ms" not in results.load_results(results_dir=results_dir).models, "no latency table, no column"


def test_chapter_summaries(results_dir):
    loaded = results.load_results(results_dir=results_dir)
    grid = loaded.pruning
    unstructured = grid[grid["family"] == "unstructured pruning"]
    best = tables.best_per_ratio(unstructured)
    assert dict(best["method"]) == {2.0: "layer_weight", 8.0: "global_gradient"}
    assert best.loc[8.0, "EER % [95% CI]"] == "8.00 [7.00, 9.00]"
    text = comparison.best_setting_text(unstructured)
    assert "layer_weight at 2x" in text and "reaches 10.00%" in text and "comparison page" in text
    shown = tables.grid_summary(grid)
    assert shown.loc[("unstructured pruning", "layer_weight", 8.0, 0), "stored MB"] == 0.0
    assert shown.loc[("unstructured pruning", "layer_weight", 8.0, 0), "still improving"] == "yes"
    assert tables.interval_text(loaded.base) == "5.00 [4.00, 6.00]"
    summary = tables.model_summary(loaded.models)
    assert summary.loc[0, "label"] == "resnet50 (base)" and summary["latency ms"].isna().all()


def test_intervals_separate():
    a = {"eer ci_low": 0.1, "eer ci_high": 0.2}
    assert not tables.intervals_separate(a, {"eer ci_low": 0.2, "eer ci_high": 0.3})
    assert tables.intervals_separate(a, {"eer ci_low": 0.21, "eer ci_high": 0.3})


def test_importing_plots_changes_no_global_style():
    import importlib
    import sys

    sys.modules.pop("ocular_utils.report.plots", None)
    matplotlib.rcdefaults()
    before = dict(matplotlib.rcParams)
    plots = importlib.import_module("ocular_utils.report.plots")
    assert dict(matplotlib.rcParams) == before
    plots.apply_style()
    assert dict(matplotlib.rcParams) != before
    matplotlib.rcdefaults()


def _score_file(path, separation, seed=0):
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(30), 10)
    genuine = np.tile(np.arange(10) < 3, 30)
    reference = np.where(genuine, subjects, (subjects + 1 + rng.integers(0, 29, subjects.size)) % 30)
    noise = np.random.default_rng(0).normal(size=genuine.size) + 0.05 * rng.normal(size=genuine.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=noise + separation * genuine, genuine=genuine, probe_subject=subjects.astype(str),
             reference_subject=reference.astype(str), trial_list=np.array("one"))
    return str(path)


def test_phone_verdict_chooses_on_validation_and_needs_both_looks(tmp_path):
    """An int8 model has no look at 2B: however clear at B, the category answer is not settled."""
    from ocular_utils.report import phone

    def row(label, category, separation, validation_eer, with_double):
        at = _score_file(tmp_path / label / "scores.npz", separation)
        double = _score_file(tmp_path / label / "2B.npz", separation, 1) if with_double else None
        return {"label": label, "category": category, "speedup": 12.0, "validation_eer": validation_eer,
                "eer": 0.1, "scores": at, "scores_2B": double}

    models = pd.DataFrame([row("int8 student", "combination", 3.0, 0.05, False),
                           row("student", "distillation", 1.0, 0.10, True),
                           row("pruned", "pruning", 3.5, 0.20, True)])  # best on test, not on validation
    verdict = phone.category_verdict(models, 10, replicates=200)
    assert verdict["winner"] == "int8 student", "the winner is chosen on validation EER"
    assert verdict["verdict"] == "inconclusive" and "no look at 2B" in verdict["text"]
    both = models.assign(scores_2B=[_score_file(tmp_path / "x" / "2B.npz", 3.0, 2), *models["scores_2B"][1:]])
    settled = phone.category_verdict(both.iloc[:2], 10, replicates=200)
    assert settled["verdict"] == "combination", "lower at B and at 2B, raw p < 0.05"


def test_the_fixed_overhead_of_a_pruning_unit_is_summed_per_run_and_judged_on_the_median():
    from ocular_utils.report import timing

    records = pd.DataFrame({"kind": ["prune", "prune", "prune", "base"],
                            "timings.startup": [4.0, 5.0, 6.0, 9.0], "timings.data": [1.0, None, 1.0, 1.0],
                            "timings.finetune": [95.0, 45.0, 193.0, 300.0], "timings.save": [0.0, 0.0, 0.0, 2.0]})
    overhead = timing.overhead_summary(records)
    assert list(overhead.index) == ["median", "mean", "min", "max"] and overhead.index.name == "over 3 prune runs"
    assert list(overhead.columns) == ["unit s", "startup s", "data s", "save s", "fixed s", "fixed share (%)"]
    assert overhead.loc["median", "unit s"] == 100.0 and overhead.loc["max", "fixed s"] == 7.0
    assert overhead.loc["median", "fixed share (%)"] == pytest.approx(5.0)  # runs: 5%, 10%, 3.5%
    assert "**5%**" in timing.overhead_verdict(overhead) and "within" in timing.overhead_verdict(overhead)
    slow = records.assign(**{"timings.startup": [9.0, 9.0, 9.0, 9.0]})
    assert "above the target of at most 5%" in timing.overhead_verdict(timing.overhead_summary(slow))
    assert timing.overhead_summary(records[records.kind == "base"]).empty
    assert "No pruning unit" in timing.overhead_verdict(timing.overhead_summary(records[records.kind == "base"]))


def test_the_rate_sweep_table_marks_the_rate_of_the_lowest_mean_validation_eer(tmp_path):
    runs = []
    for method, rate, eer in [("layer_weight", 0.001, 0.20), ("layer_weight", 0.01, 0.10),
                              ("channel_magnitude", 0.001, 0.30), ("channel_magnitude", 0.01, 0.26)]:
        run_dir = tmp_path / f"{method}-{rate}"
        write_record(run_dir, Record("prune", {"pruning": {"finetune": {"lr": rate}}}, method=method,
                                     training_images=768, metrics={"validation_eer": eer}))
        runs.append({"kind": "prune", "run_dir": str(run_dir), "method": method, "training_images": 768,
                     "metrics.validation_eer": eer})
    sweep = tables.sweep_table(pd.DataFrame(runs))
    assert list(sweep.columns) == ["rate (SGD, 768 images)", "channel_magnitude", "layer_weight", "mean", "chosen"]
    assert list(sweep["chosen"]) == [False, True] and list(sweep["mean"]) == [25.0, 18.0]
    assert tables.sweep_table(pd.DataFrame(runs).assign(kind="distill")).empty
