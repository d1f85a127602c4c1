"""Tidy tables built from result records, as the book's chapters show them, and the one call that loads them.

Every table has typed columns (``method``, ``requested``, ``student``, ``kd_loss``, ``family``);
``label`` is for display only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import resolve
from ..core.records import TYPED_COLUMNS, display_label, load_records, read_details, read_record
from ..core.study import PAPER_METHOD
from ..verification.scoring import load_scores
from .display import interval_cell

HEADLINE = ("eer", "eer ci_low", "eer ci_high", "tar@far=0.01", "tar@far=0.001")
MODEL_KINDS = ("base", "prune", "distill")


def gather(runs: list[str | Path] | str | Path | None, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Records of the given run folders (or every record under ``results_dir``), one table."""
    if runs:
        frames = [load_records(run) for run in ([runs] if isinstance(runs, (str, Path)) else runs)]
        frames = [f for f in frames if len(f)]
        empty = pd.DataFrame(columns=TYPED_COLUMNS + ["run_dir", "run"])
        return pd.concat(frames, ignore_index=True) if frames else empty
    if results_dir is None:
        raise ValueError("give the run folders (runs=[...]) or a results_dir to read records from")
    return load_records(results_dir)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column of ``frame``, or NaN where no record has it (e.g. sparse sizes of dense models)."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


def _headline(runs: pd.DataFrame) -> dict:
    """The headline verification metrics of record rows, as table columns."""
    return {name: runs[f"metrics.{name}"] for name in HEADLINE}


def base_row(records: pd.DataFrame) -> pd.Series:
    """The base model's record (exactly one is expected)."""
    base = records[records["kind"] == "base"]
    if len(base) != 1:
        raise ValueError(f"expected one base-model record, found {len(base)}")
    return base.iloc[0]


def _model_columns(runs: pd.DataFrame) -> dict:
    """The columns every model table shares: display label, family, size, cost, headline metrics, budget, run."""
    return {"label": runs.apply(display_label, axis=1), "family": runs["family"],
            "compression": runs["achieved_compression"].astype(float), "params": runs["model.params"],
            "nonzero_params": runs["model.nonzero_params"], "macs": runs["model.macs"],
            "nonzero_macs": runs["model.nonzero_macs"], **_headline(runs),
            "deployed_dense_bytes": runs["model.deployed_dense_bytes"],
            "stored_bytes": _column(runs, "model.deployed_sparse_bytes").fillna(runs["model.deployed_dense_bytes"]),
            "training_images": runs["training_images"], "seed": runs["seed"],
            "role": _column(runs, "role").astype(object).where(_column(runs, "role").notna(), None),
            "still_improving": _column(runs, "still_improving").astype(object).where(
                _column(runs, "still_improving").notna(), None),
            "validation_eer": _column(runs, "metrics.validation_eer"), "run_dir": runs["run_dir"],
            "run": runs["run"]}


def compression_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per pruning run: method, requested/achieved compression, EER before/after fine-tuning, sizes."""
    runs = records[records["kind"] == "prune"]
    if runs.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"method": runs["method"], "requested": runs["requested_compression"].astype(float),
                        "eer_before_finetune": _column(runs, "metrics.before.eer"),
                        "finetune_seconds": _column(runs, "timings.finetune"), **_model_columns(runs)})
    return out.sort_values(["family", "method", "requested"]).reset_index(drop=True)


def distillation_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per student run: student, loss, parameters, EER with intervals, compression vs the teacher."""
    runs = records[records["kind"] == "distill"]
    if runs.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"student": runs["student"], "loss": runs["kd_loss"],
                        "train_seconds": _column(runs, "timings.train"),
                        **_model_columns(runs)})
    return out.sort_values(["student", "loss"]).reset_index(drop=True)


def model_table(records: pd.DataFrame) -> pd.DataFrame:
    """Every model of the study in one table: label, typed identity, compression, EER (+ interval), cost, size."""
    runs = records[records["kind"].isin(MODEL_KINDS)]
    return pd.DataFrame({"kind": runs["kind"], "method": _column(runs, "method"),
                         "requested": _column(runs, "requested_compression").astype(float),
                         "student": _column(runs, "student"), "kd_loss": _column(runs, "kd_loss"),
                         **_model_columns(runs)}).reset_index(drop=True)


def percent(frame: pd.DataFrame, columns=None, digits: int = 2) -> pd.DataFrame:
    """Copy of ``frame`` with rate columns (EER, TAR, intervals) shown in percent."""
    frame = frame.copy()
    columns = columns or [c for c in frame.columns if c.startswith(("eer", "tar@")) and c != "eer_threshold"]
    for column in columns:
        frame[column] = (100 * frame[column].astype(float)).round(digits)
    return frame


def with_interval(frame: pd.DataFrame, column: str = "eer", digits: int = 2) -> pd.Series:
    """``value [low, high]`` strings in percent for a metric with bootstrap bounds."""
    return frame.apply(lambda r: interval_text(r, column, digits), axis=1)


def interval_text(row, column: str = "eer", digits: int = 2) -> str:
    """``value [low, high]`` in percent for one row (a record row uses ``metrics.eer``, a table row ``eer``)."""
    prefix = "metrics." if f"metrics.{column}" in row else ""
    return interval_cell(*(row[f"{prefix}{column}{suffix}"] for suffix in ("", " ci_low", " ci_high")), digits=digits)


def intervals_separate(a, b, column: str = "eer") -> bool:
    """True when the 95% intervals of two rows do not overlap."""
    return bool(a[f"{column} ci_high"] < b[f"{column} ci_low"] or b[f"{column} ci_high"] < a[f"{column} ci_low"])


RECORD_IDENTITY = ["kind", "method", "requested_compression", "student", "kd_loss", "role", "training_images"]


def identity_key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One string per row joining ``columns`` (missing values included): which model a run is, across seeds."""
    return frame.reindex(columns=columns).apply(lambda row: "|".join(map(str, row)), axis=1).astype(object)


def without_extra_seeds(records: pd.DataFrame) -> pd.DataFrame:
    """The grid's records: per model identity, the run with the lowest seed (extra seeds dropped)."""
    if records.empty:
        return records
    identity = identity_key(records, RECORD_IDENTITY)
    keep = records.assign(_id=identity).sort_values("seed", kind="stable").drop_duplicates("_id").index
    return records.loc[sorted(keep)]


@dataclass
class StudyResults:
    """The records a chapter shows, loaded once: raw records and the tables built from them.

    :attr:`models`, :attr:`pruning` and :attr:`students` hold one run per model (the grid's seed);
    :attr:`all_models` adds the extra seeds of the headline models.
    """

    records: pd.DataFrame
    latency: pd.DataFrame

    @property
    def synthetic(self) -> bool:
        """True when any record comes from the synthetic data."""
        return bool(self.records["synthetic"].any())

    @property
    def base(self) -> pd.Series:
        """The base model's record."""
        return base_row(self.records)

    @property
    def grid_records(self) -> pd.DataFrame:
        """The records without the extra seeds."""
        return without_extra_seeds(self.records)

    @property
    def models(self) -> pd.DataFrame:
        """Every model once (with ``median_ms`` at the study input in eager PyTorch where latency was measured)."""
        return self._with_latency(model_table(self.grid_records))

    @property
    def all_models(self) -> pd.DataFrame:
        """Every run of a model, the extra seeds included."""
        return self._with_latency(model_table(self.records))

    def _with_latency(self, models: pd.DataFrame) -> pd.DataFrame:
        part = self.latency[(self.latency["runtime"] == "eager") & (self.latency["scope"] == "all models")]
        if part.empty:
            return models
        part = part[part["input"] == part["input"].iloc[0]]
        return models.merge(part[["run", "median_ms"]].drop_duplicates("run"), on="run", how="left")

    @property
    def latency_input(self) -> str | None:
        """The input size (``HxW``) of the latency column of :attr:`models`, if latency was measured."""
        return None if self.latency.empty else str(self.latency["input"].iloc[0])

    def along_the_way(self, headline: float) -> pd.DataFrame:
        """Test EER at each point along the way of the runs that went past their budget, with a display group."""
        rows = []
        for _, model in self.models.iterrows():
            for point in read_details(model["run_dir"]).get("along_the_way", []):
                if point.get("test_eer") is None:
                    continue
                rows.append({"group": _curve_group(model, headline), "label": model["label"],
                             "images": point["budget_images"], "test_eer": point["test_eer"],
                             "validation_eer": point["val_eer"]})
        return pd.DataFrame(rows, columns=["group", "label", "images", "test_eer", "validation_eer"]).dropna(
            subset=["group"])

    def improvement(self) -> pd.DataFrame:
        """Information only: per run, the paired EER change of its finished model from the budget to twice it."""
        rows = []
        for _, model in self.all_models.iterrows():
            check = read_details(model["run_dir"]).get("improvement")
            if check:
                rows.append({"model": model["label"], "seed": model["seed"], "family": model["family"],
                             "from (images)": check["images"], "to (images)": check["doubled_to"],
                             "change (points)": round(100 * check["change"], 2),
                             "95% interval": f"[{100 * check['ci_low']:+.2f}, {100 * check['ci_high']:+.2f}]",
                             "still improving": IMPROVING_TEXT[check["still_improving"]]})
        return pd.DataFrame(rows)

    def scores(self, rows: pd.DataFrame) -> dict:
        """``{label: (genuine, impostor)}`` test scores of the models in ``rows`` (for ROC / DET curves)."""
        return {row["label"]: load_scores(row["run_dir"]) for _, row in rows.iterrows()}

    @property
    def pruning(self) -> pd.DataFrame:
        """The pruning grid (:func:`compression_table`)."""
        return compression_table(self.grid_records)

    @property
    def students(self) -> pd.DataFrame:
        """The student runs at the matched budget after the base (:func:`distillation_table`)."""
        students = distillation_table(self.grid_records)
        return students[students["role"].fillna("grid").eq("grid")] if len(students) else students

    @property
    def students_at_total(self) -> pd.DataFrame:
        """Students trained for the base's images + B (matched total training), if the study ran them."""
        students = distillation_table(self.grid_records)
        return students[students["role"].eq("total")] if len(students) else students


def _curve_group(model: pd.Series, headline: float) -> str | None:
    """The panel of the budget figure a model belongs to (None: not shown)."""
    if model["kind"] == "distill":
        return "students"
    if model["kind"] != "prune":
        return None
    if np.isclose(model["requested"], headline):
        return f"{model['family']} at {headline:g}x"
    return f"{PAPER_METHOD} at each ratio" if model["method"] == PAPER_METHOD else None


def load_results(runs=None, results_dir: str | Path | None = None, latency_dir: str | Path | None = None
                 ) -> StudyResults:
    """The one call a chapter makes: records of ``runs`` (or all under ``results_dir``) and the latency table."""
    records = gather(runs, resolve(results_dir))
    path = resolve(latency_dir) / "latency.csv" if latency_dir else None
    latency = pd.read_csv(path) if path is not None and path.is_file() else pd.DataFrame(
        columns=["run", "runtime", "input", "median_ms", "scope"])
    return StudyResults(records, latency)


SYNTHETIC_NOTE = ("> **Synthetic data.** Every number and figure on this page comes from the embedded synthetic "
                  "periocular data set generated by `ocular_utils.data.synthetic`, not from VISOB or "
                  "UFPR-Periocular images. They show that the pipeline works and how methods compare on it; "
                  "they are not estimates of performance on real ocular data.")


def synthetic_banner(synthetic: bool):
    """A Markdown banner that labels results from the synthetic default data (nothing for real data)."""
    from IPython.display import Markdown

    return Markdown(SYNTHETIC_NOTE if synthetic else "")


def evaluation_summary(report: dict, name: str) -> pd.DataFrame:
    """One model's headline numbers (EER with interval, TAR at FAR, trial counts, AUC), rates in percent."""

    return pd.DataFrame([{"model": name, "EER % [95% CI]": interval_cell(report["eer"], report["eer ci_low"],
                                                                        report["eer ci_high"]),
                          "TAR % at FAR 1%": 100 * report["tar@far=0.01"],
                          "TAR % at FAR 0.1%": 100 * report["tar@far=0.001"],
                          "genuine trials": report["genuine_trials"], "impostor trials": report["impostor_trials"],
                          "AUC": round(report["auc"], 4)}])


def stage_table(reports: dict) -> pd.DataFrame:
    """Headline metrics (percent) of one model at several stages, e.g. after pruning and after fine-tuning."""
    frame = pd.DataFrame([report | {"stage": stage} for stage, report in reports.items()])
    return percent(frame[["stage", "eer", "tar@far=0.01", "tar@far=0.001", "auc"]])


def dataset_card(summary: dict) -> pd.DataFrame:
    """A data set's summary as a one-column table (lists joined)."""
    return pd.Series({k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in summary.items()},
                     name="dataset card").to_frame()


def trials_summary(trials: pd.DataFrame, split) -> pd.DataFrame:
    """Genuine and impostor trial counts of the test protocol."""
    genuine = trials["genuine"]
    return pd.Series({"genuine trials": int(genuine.sum()), "impostor trials": int((~genuine).sum()),
                      "eyes": split.eyes, "protocol": split.protocol}, name="test trials").to_frame()


def grid_summary(grid: pd.DataFrame) -> pd.DataFrame:
    """The pruning grid as the chapter shows it: EER with interval, before fine-tuning, TAR, stored and dense size."""
    shown = grid.assign(**{"EER % [95% CI]": with_interval(grid),
                           "EER before FT %": (100 * grid["eer_before_finetune"]).round(2),
                           "TAR@FAR=1%": (100 * grid["tar@far=0.01"]).round(2),
                           "stored MB": (grid["stored_bytes"] / 1e6).round(2),
                           "dense MB": (grid["deployed_dense_bytes"] / 1e6).round(2),
                           "achieved": grid["compression"].round(3)})
    shown = shown.assign(**{"still improving": shown["still_improving"].map(IMPROVING_TEXT)})
    return shown[["family", "method", "requested", "seed", "achieved", "EER before FT %", "EER % [95% CI]",
                  "TAR@FAR=1%", "stored MB", "dense MB", "training_images", "still improving"]].set_index(
        ["family", "method", "requested", "seed"])


def best_per_ratio(unstructured: pd.DataFrame) -> pd.DataFrame:
    """For each requested ratio, the unstructured method with the lowest EER after fine-tuning."""
    best = unstructured.loc[unstructured.groupby("requested")["eer"].idxmin()]
    return best.assign(**{"EER % [95% CI]": with_interval(best)})[["requested", "method", "EER % [95% CI]"]] \
        .set_index("requested")


def student_summary(students: pd.DataFrame) -> pd.DataFrame:
    """The students as the chapter shows them: size, compression, MACs, EER with interval, TAR, training time."""
    shown = students.assign(**{"EER % [95% CI]": with_interval(students),
                               "still improving": students["still_improving"].map(IMPROVING_TEXT),
                               "TAR@FAR=1%": (100 * students["tar@far=0.01"]).round(2),
                               "params (M)": (students["params"] / 1e6).round(3),
                               "compression vs teacher": students["compression"].round(2),
                               "MACs (M)": (students["macs"] / 1e6).round(1),
                               "train s": students["train_seconds"].round(0)})
    return shown[["student", "loss", "seed", "params (M)", "compression vs teacher", "MACs (M)", "EER % [95% CI]",
                  "TAR@FAR=1%", "training_images", "still improving", "train s"]].set_index(
        ["student", "loss", "training_images", "seed"])


def model_summary(models: pd.DataFrame) -> pd.DataFrame:
    """Every model, best EER first: family, compression, sizes, latency (where measured), EER with interval."""
    latency = models["median_ms"].round(2) if "median_ms" in models else np.nan
    summary = models.assign(**{"EER % [95% CI]": with_interval(models), "compression": models["compression"].round(2),
                               "params (M)": (models["params"] / 1e6).round(2),
                               "nonzero (M)": (models["nonzero_params"] / 1e6).round(2),
                               "stored MB": (models["stored_bytes"] / 1e6).round(2), "latency ms": latency})
    summary = summary.assign(**{"still improving": summary["still_improving"].map(IMPROVING_TEXT)})
    return summary.sort_values("eer")[["label", "family", "seed", "compression", "params (M)", "nonzero (M)",
                                       "stored MB", "latency ms", "training_images", "still improving",
                                       "EER % [95% CI]"]].reset_index(drop=True)


IMPROVING_TEXT = {True: "yes", False: "no", None: "not checked"}


def budget_table(models: pd.DataFrame) -> pd.DataFrame:
    """Per family: runs, training images (after the base for compressed models, from scratch for students and
    the base), and how many runs were checked for improvement from B to 2B and were still improving."""
    checked = models["still_improving"].notna()
    return models.assign(checked=checked, improving=models["still_improving"].eq(True)).groupby("family").agg(
        runs=("run", "count"), images_min=("training_images", "min"), images_max=("training_images", "max"),
        checked=("checked", "sum"), still_improving=("improving", "sum"))


def sparsity_summary(detail: pd.DataFrame, ratios: pd.DataFrame, input_size: str) -> pd.DataFrame:
    """What unstructured sparsity buys: nonzero parameters and MACs, stored size and speed-up per runtime."""
    rows = []
    for _, row in detail.iterrows():
        r = ratios[(ratios["run"] == row["run"]) & (ratios["input"] == input_size)]
        rows.append({"model": row["label"], "family": row["family"], "nonzero params (M)": row["nonzero_params"] / 1e6,
                     "dense MACs (M)": row["macs"] / 1e6, "nonzero MACs (M)": row["nonzero_macs"] / 1e6,
                     "stored size (MB)": row["stored_bytes"] / 1e6,
                     **{f"speed-up {rt}": float(r.loc[r["runtime"] == rt, "speedup"].iloc[0])
                        for rt in r["runtime"].unique()}})
    return pd.DataFrame(rows).round(3)


def sweep_table(records: pd.DataFrame) -> pd.DataFrame:
    """The fine-tuning rate sweep: validation EER (%) per method and rate, their mean, and the rate chosen.

    The rate with the lowest mean validation EER is chosen (validation identities only, never test).
    """
    runs = records[records["kind"] == "prune"]
    if runs.empty:
        return pd.DataFrame()
    rates = [read_record(run_dir)["params"]["pruning"]["finetune"]["lr"] for run_dir in runs["run_dir"]]
    table = pd.DataFrame({"method": runs["method"].to_numpy(), "rate": rates,
                          "validation EER %": 100 * runs["metrics.validation_eer"].astype(float).to_numpy()})
    shown = table.pivot_table(index="rate", columns="method", values="validation EER %").round(2)
    shown["mean"] = shown.mean(axis=1).round(2)
    shown["chosen"] = np.where(shown.index == shown["mean"].idxmin(), "yes", "")
    images = int(runs["training_images"].iloc[0])
    return shown.rename_axis(f"rate (SGD, {images:,} images)").reset_index()
