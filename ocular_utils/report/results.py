"""The study's results as chapters read them: the records of the runs, one row per model, and the latency table.

:func:`load_results` is the one call a chapter makes; :class:`StudyResults` holds the raw records and builds the
typed model tables from them (``method``, ``requested_compression``, ``student``, ``kd_loss``, ``family``;
``label`` is for display only). Formatting them for a page is :mod:`.tables` and :mod:`.display`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import resolve
from ..core.records import TYPED_COLUMNS, display_label, load_records, read_details
from ..core.study import PAPER_METHOD
from ..verification.scoring import load_trial_scores
from .display import interval_text

IMPROVING_TEXT = {True: "yes", False: "no", None: "not checked"}  # "still improving" as a reader reads it
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
    out = pd.DataFrame({"method": runs["method"], "requested_compression": runs["requested_compression"].astype(float),
                        "eer_before_finetune": _column(runs, "metrics.before.eer"),
                        "finetune_seconds": _column(runs, "timings.finetune"), **_model_columns(runs)})
    return out.sort_values(["family", "method", "requested_compression"]).reset_index(drop=True)


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
                         "requested_compression": _column(runs, "requested_compression").astype(float),
                         "student": _column(runs, "student"), "kd_loss": _column(runs, "kd_loss"),
                         **_model_columns(runs)}).reset_index(drop=True)


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
                             "95% interval": interval_text(check["ci_low"], check["ci_high"]),
                             "still improving": IMPROVING_TEXT[check["still_improving"]]})
        return pd.DataFrame(rows)

    def scores(self, rows: pd.DataFrame) -> dict:
        """``{label: (genuine, impostor)}`` test scores of the models in ``rows`` (for ROC / DET curves)."""
        files = {row["label"]: load_trial_scores(row["run_dir"]) for _, row in rows.iterrows()}
        return {label: (f["scores"][f["genuine"]], f["scores"][~f["genuine"]]) for label, f in files.items()}

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
    if np.isclose(model["requested_compression"], headline):
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
