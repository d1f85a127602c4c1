"""The paper's question on the data at hand: which models are compared, and each comparison at two budgets.

Every verdict (:mod:`ocular_utils.report.verdicts`) rests on *paired* comparisons: two models scored
on the identical test trials, the difference of their EER (a - b) with a subject-bootstrap interval
and p-value, both subjects of every trial resampled. A comparison is looked at twice, at its budget
``B`` and at ``2B`` (fixed in advance; and at ``B/2`` for the figures), with one subject draw shared
by all its score sets (:func:`ocular_utils.verification.paired.paired_looks`). Over extra seeds, the
mean of the per-seed differences has an interval from the between-seed variance.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..compression.distillation import KD_STUDENT
from ..compression.registry import UNSTRUCTURED
from ..core.records import display_label, read_details, read_record
from ..core.study import FAIR_FACTOR, PAPER_METHOD, fair_ratio
from ..training.along import point_scores
from ..verification.paired import compare_scores, holm, paired_looks
from ..verification.scoring import load_trial_scores
from .display import interval_text
from .results import identity_key

LOOKS = ("B/2", "B", "2B")  # the budgets a comparison is looked at; the verdict needs B and 2B
IDENTITY = ["kind", "method", "requested_compression", "student", "kd_loss", "role", "training_images"]
CLAIMS = {"lower": "a has lower EER than b", "no worse": "a is no worse than b (margin delta)"}

PAPER_FINDINGS = {
    "best_method": "At the headline compression (8x), layerwise magnitude is the best of the five pruning methods.",
    "best_ratio": "Compression 8 is the best pruning setting: the most compression before verification suffers.",
    "kd_accuracy": "Knowledge distillation gives lower EER than pruning.",
    "kd_time": "Knowledge distillation gives shorter deep-feature-extraction time than pruning.",
}
# Not the paper's question, shown beside it: once a trained base exists, is a student (trained for B
# images from scratch) better than pruning the base (B images of fine-tuning)?
OUR_QUESTIONS = {"kd_after_base": "Once a base exists, a student trained for the same B images beats pruning it."}


def _identity(frame: pd.DataFrame) -> pd.Series:
    return identity_key(frame, IDENTITY)


def primary(models: pd.DataFrame) -> pd.DataFrame:
    """One row per model (the run with the lowest seed: the grid's), without the extra seeds."""
    ordered = models.assign(_id=_identity(models)).sort_values("seed", kind="stable")
    return ordered.drop_duplicates("_id").drop(columns="_id").sort_index()


def seed_summary(models: pd.DataFrame) -> pd.DataFrame:
    """Models run with several seeds: test EER mean, standard deviation and range across seeds (points)."""
    rows = []
    for _, group in models.assign(_id=_identity(models)).groupby("_id", sort=False):
        if len(group) < 2:
            continue
        eer = 100 * group["eer"].astype(float)
        rows.append({"model": group["label"].iloc[0], "family": group["family"].iloc[0], "seeds": len(group),
                     "EER mean %": round(eer.mean(), 2), "EER sd": round(eer.std(ddof=1), 2),
                     "EER min %": round(eer.min(), 2), "EER max %": round(eer.max(), 2),
                     "range (points)": round(eer.max() - eer.min(), 2)})
    return pd.DataFrame(rows, columns=["model", "family", "seeds", "EER mean %", "EER sd", "EER min %", "EER max %",
                                       "range (points)"])


def look_path(row: pd.Series, look: str) -> Path | None:
    """The test scores of a model's finished model at a look (``B/2``, ``B``, ``2B`` of its own budget).

    The base is one model at every look. A run's looks are its points along the way: 1.0 is B, the
    largest point above it 2B, the largest below it B/2 (a student at matched total training looks at
    the base's images + B/2, + B, + 2B). ``None`` where the run was not scored there.
    """
    run_dir = Path(row["run_dir"])
    if row["kind"] == "base":
        return run_dir / "scores.npz"
    points = {p["point"]: p["budget_images"] for p in read_details(run_dir).get("along_the_way", [])
              if p.get("test_eer") is not None}
    wanted = {"B": [p for p in points if p == 1.0], "2B": [p for p in points if p > 1.0],
              "B/2": [p for p in points if p < 1.0]}[look]
    return point_scores(run_dir, points[max(wanted)]) if wanted else None


class RunScores:
    """Test scores of models at their looks, each file read once.

    ``preloaded`` maps ``(run_dir, look)`` to a loaded score file (tests; or ``None`` for "not scored").
    """

    def __init__(self, preloaded: dict | None = None):
        self.cache = dict(preloaded or {})

    def get(self, row: pd.Series, look: str) -> dict | None:
        """The loaded score file of ``row``'s model at ``look``, or ``None``."""
        key = (str(row["run_dir"]), look)
        if key not in self.cache:
            path = look_path(row, look)
            self.cache[key] = load_trial_scores(path) if path is not None and path.is_file() else None
        return self.cache[key]


def _at_ratio(frame: pd.DataFrame, ratio: float) -> pd.DataFrame:
    return frame[np.isclose(frame["requested_compression"].astype(float), ratio)]


def _grid(models: pd.DataFrame) -> pd.DataFrame:
    role = models["role"] if "role" in models else pd.Series("grid", index=models.index)
    return models[role.fillna("grid").eq("grid")]


def finding_pairs(models: pd.DataFrame, headline: float = 8) -> tuple[list[dict], list[tuple[str, str]]]:
    """``(pairs, missing)``: every comparison behind the verdicts (grid runs, seed 0), and what is missing.

    Rows are picked by their typed identity (method, ratio, role), never by position.
    best_method: the paper's method against each other unstructured method at ``headline``;
    best_ratio: the paper's method at each ratio against the base ("no worse", margin delta);
    kd_accuracy: per student, its KD version at matched total training (the base's images + B)
    against every pruning method at the grid ratio within 1.5x of the student's compression;
    kd_after_base: the same with the student's best KD version at B images (chosen on validation EER).
    """
    models = primary(models)
    pairs, missing = [], []
    grid = _grid(models)
    base = models[models["kind"] == "base"]
    pruned = grid[grid["kind"] == "prune"]
    unstructured = pruned[pruned["family"] == UNSTRUCTURED]
    at = _at_ratio(unstructured, headline)
    paper = at[at["method"] == PAPER_METHOD]
    if paper.empty:
        missing.append(("best_method", f"no {PAPER_METHOD} run at {headline:g}x"))
    for _, other in at[at["method"] != PAPER_METHOD].iterrows():
        if len(paper):
            pairs.append({"finding": "best_method", "group": f"{PAPER_METHOD} at {headline:g}x", "claim": "lower",
                          "a": paper.iloc[0], "b": other})
    if base.empty:
        missing.append(("best_ratio", "no base model"))
    paper_runs = unstructured[unstructured["method"] == PAPER_METHOD]
    ratios = sorted(paper_runs["requested_compression"].dropna().unique())
    if not any(np.isclose(ratios, headline)):
        missing.append(("best_ratio", f"no {PAPER_METHOD} run at {headline:g}x"))
    for ratio in ratios:
        row = _at_ratio(paper_runs, ratio)
        if len(row) and len(base):
            pairs.append({"finding": "best_ratio", "group": f"{PAPER_METHOD} against the base", "claim": "no worse",
                          "a": row.iloc[0], "b": base.iloc[0], "ratio": float(ratio)})
    grid_ratios = sorted(pruned["requested_compression"].unique())
    students = models[(models["family"] == KD_STUDENT)]
    for finding, role in (("kd_accuracy", "total"), ("kd_after_base", "grid")):
        chosen = students[students["role"].fillna("grid").eq(role)] if "role" in students else students
        for name, group in chosen.groupby("student"):
            best = group.loc[group["validation_eer"].astype(float).idxmin()]
            ratio = fair_ratio(best["compression"], grid_ratios)
            partners = _at_ratio(pruned, ratio) if ratio else pruned.iloc[:0]
            if partners.empty:
                missing.append((finding, f"{best['label']} has no pruned partner within {FAIR_FACTOR}x"))
            for _, partner in partners.iterrows():
                pairs.append({"finding": finding, "group": f"{best['label']} (compression {best['compression']:.1f}x)",
                              "claim": "lower", "a": best, "b": partner})
    if students.empty:
        missing.append(("kd_accuracy", "no distilled student"))
    return pairs, missing


def _moved(row: pd.Series) -> float:
    """A model's own EER change from its budget to twice it (points; 0 for the base), information only."""
    if row["kind"] == "base":
        return 0.0
    check = read_details(row["run_dir"]).get("improvement") or {}
    return 100 * check["change"] if check.get("doubled_to") and check["images"] == row["training_images"] \
        else float("nan")


def seed_differences(a: pd.Series, b: pd.Series, all_models: pd.DataFrame, level: float = 0.95) -> dict:
    """Per-seed EER differences a - b at the budget: their mean and an interval from the between-seed variance.

    Seeds pair by number; a model with one run pairs it with every seed of the other. Fewer than
    two pairs: ``seeds`` < 2 and no interval.
    """
    ids = _identity(all_models)
    runs_a = all_models[ids == _identity(a.to_frame().T).iloc[0]].set_index("seed")["eer"]
    runs_b = all_models[ids == _identity(b.to_frame().T).iloc[0]].set_index("seed")["eer"]
    if len(runs_a) > 1 and len(runs_b) > 1:
        common = runs_a.index.intersection(runs_b.index)
        differences = (runs_a[common] - runs_b[common]).to_numpy()
    elif len(runs_a) > 1 or len(runs_b) > 1:
        differences = (runs_a.to_numpy()[:, None] - runs_b.to_numpy()[None, :]).ravel()
    else:
        differences = (runs_a.to_numpy() - runs_b.to_numpy()).ravel()
    differences = 100 * differences.astype(float)
    n = len(differences)
    if n < 2:
        return {"seeds": n, "seed mean": float(differences.mean()) if n else np.nan, "seed low": np.nan,
                "seed high": np.nan}
    half = stats.t.ppf(0.5 + level / 2, n - 1) * differences.std(ddof=1) / np.sqrt(n)
    return {"seeds": n, "seed mean": float(differences.mean()), "seed low": float(differences.mean() - half),
            "seed high": float(differences.mean() + half)}


COLUMNS = (["finding", "group", "claim", "a", "b", "ratio"]
           + [f"{look} {field}" for look in LOOKS for field in ("difference", "low", "high", "p", "high90")]
           + ["change", "change low90", "change high90", "budget a", "budget b", "matched", "a moved", "b moved",
              "seeds", "seed mean", "seed low", "seed high"])


def paired_comparisons(models: pd.DataFrame, replicates: int, seed: int = 0, headline: float = 8,
                       scores: RunScores | dict | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``(comparisons, missing)``: every comparison behind the verdicts at each look, in points.

    ``models`` holds every run (extra seeds included). One subject draw per comparison serves all
    its looks. Per look: the paired difference a - b, its 95% interval, p-value and 90% upper bound;
    the change of the difference from B to 2B with its 90% interval; each model's own change
    (information only); the seed check. Runs scored on different trial lists are refused.
    """
    scores = scores if isinstance(scores, RunScores) else RunScores(scores)
    pairs, missing = finding_pairs(models, headline)
    base = models[models["kind"] == "base"]
    base_images = int(base["training_images"].iloc[0]) if len(base) else 0
    rows = []
    for pair in pairs:
        a, b = pair["a"], pair["b"]
        looks = {look: (scores.get(a, look), scores.get(b, look)) for look in LOOKS}
        looks = {look: ab for look, ab in looks.items() if ab[0] is not None and ab[1] is not None}
        row = {"finding": pair["finding"], "group": pair["group"], "claim": pair["claim"], "a": a["label"],
               "b": b["label"], "ratio": pair.get("ratio", np.nan), "budget a": a["training_images"],
               "budget b": b["training_images"], "matched": _matched(a, b, base_images), "a moved": _moved(a),
               "b moved": _moved(b)}
        if looks:
            result = paired_looks(looks, replicates, seed)
            for look, difference in result.differences.items():
                row |= {f"{look} difference": 100 * difference.difference, f"{look} low": 100 * difference.ci_low,
                        f"{look} high": 100 * difference.ci_high, f"{look} p": difference.p_value,
                        f"{look} high90": 100 * result.at_level(look, 0.90).ci_high}
            if "B" in looks and "2B" in looks:
                change = result.between("B", "2B", 0.90)
                row |= {"change": 100 * change.difference, "change low90": 100 * change.ci_low,
                        "change high90": 100 * change.ci_high}
        rows.append(row | seed_differences(a, b, models))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for look in ("B", "2B"):
        frame[f"{look} p_holm"] = np.nan
        for _, index in frame.groupby(["finding", "group"]).groups.items():
            p = frame.loc[index, f"{look} p"]
            frame.loc[p.dropna().index, f"{look} p_holm"] = holm(p.dropna().to_numpy()) if p.notna().any() else []
    return frame, missing



def comparison_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The comparisons as a reader reads them: per look the difference a - b in points with its 95% interval in
    one cell and its Holm p-value, the budgets and whether they are matched."""
    from .display import interval_cell, p_value_text

    shown = pd.DataFrame({"finding": comparisons["finding"].map(PAPER_FINDINGS | OUR_QUESTIONS),
                          "on": comparisons["group"], "a": comparisons["a"], "b": comparisons["b"],
                          "claim": comparisons["claim"].map(CLAIMS)})
    for look in ("B", "2B"):
        shown[f"at {look}: a - b, points [95% CI]"] = [
            interval_cell(d, lo, hi, signed=True, scale=1.0) for d, lo, hi in
            zip(comparisons[f"{look} difference"], comparisons[f"{look} low"], comparisons[f"{look} high"])]
        shown[f"at {look}: p (Holm)"] = comparisons[f"{look} p_holm"].map(p_value_text)
    shown["training images (a / b)"] = [f"{int(a):,} / {int(b):,}" for a, b in
                                        zip(comparisons["budget a"], comparisons["budget b"])]
    shown["matched budgets"] = comparisons["matched"].astype(bool)
    return shown.reset_index(drop=True)

def _matched(a: pd.Series, b: pd.Series, base_images: int) -> bool:
    """Matched budgets: equal images after the base, or a student at the base's images + B against a pruned model."""
    if b["kind"] == "base":
        return True
    if a.get("role") == "total":
        return bool(a["training_images"] == base_images + b["training_images"])
    return bool(a["training_images"] == b["training_images"])


def partners_table(models: pd.DataFrame) -> pd.DataFrame:
    """Each student and its fair partners (pruned models within 1.5x of its compression), or why it has none."""
    models = _grid(primary(models))
    pruned = models[models["kind"] == "prune"]
    grid = sorted(pruned["requested_compression"].unique())
    rows = []
    for _, student in models[models["kind"] == "distill"].iterrows():
        ratio = fair_ratio(student["compression"], grid)
        rows.append({"student": student["label"], "compression": round(student["compression"], 2),
                     "partner ratio": f"{ratio:g}x" if ratio else f"none within {FAIR_FACTOR}x",
                     "partners": int(np.isclose(pruned["requested_compression"], ratio).sum()) if ratio else 0})
    return pd.DataFrame(rows)


def best_setting_text(unstructured: pd.DataFrame, headline: float = 8) -> str:
    """A sentence on the lowest-EER unstructured setting, and the paper's (its method at the headline ratio) beside it.

    Descriptive only (test EERs of one seed): the verdicts are on the comparison page.
    """
    best = unstructured.loc[unstructured["eer"].idxmin()]
    text = (f"Lowest test EER among unstructured settings: **{best['method']} at {best['requested_compression']:g}x** "
            f"({100 * best['eer']:.2f}%, interval {100 * best['eer ci_low']:.2f} to {100 * best['eer ci_high']:.2f}).")
    paper = unstructured[(unstructured["method"] == PAPER_METHOD)
                         & np.isclose(unstructured["requested_compression"], headline)]
    if len(paper):
        p = paper.iloc[0]
        text += (f" The paper's best setting, {PAPER_METHOD} at {headline:g}x, reaches {100 * p['eer']:.2f}% "
                 f"{interval_text(p['eer ci_low'], p['eer ci_high'], signed=False)}; whether it is the best setting is "
                 "decided on the comparison page, by paired tests at two budgets.")
    return text


def teacher_effect(students: pd.DataFrame, replicates: int, seed: int = 0, scores: dict | None = None
                   ) -> pd.DataFrame:
    """Per student, the paired EER change from the no-teacher control to each KD loss (KD - control, points).

    Same trials for both, both subjects of every trial resampled together; Holm-corrected over each
    student's losses. ``scores`` maps run folders to loaded score files (read from disk when missing).
    """
    cache, rows = dict(scores or {}), []

    def load(run_dir):
        if run_dir not in cache:
            cache[run_dir] = load_trial_scores(run_dir)
        return cache[run_dir]

    for name, group in students.groupby("student"):
        control = group[group["loss"] == "none"]
        if control.empty:
            continue
        c = control.iloc[0]
        for _, r in group[group["loss"] != "none"].iterrows():
            change = compare_scores(load(r["run_dir"]), load(c["run_dir"]), "eer", replicates, seed,
                                    names=(r["label"], c["label"]))
            rows.append({"student": name, "loss": r["loss"], "control EER %": round(100 * c["eer"], 2),
                         "KD EER %": round(100 * r["eer"], 2), "change (points)": round(100 * change.difference, 2),
                         "95% interval": interval_text(change.ci_low, change.ci_high),
                         "p": change.p_value})
    frame = pd.DataFrame(rows, columns=["student", "loss", "control EER %", "KD EER %", "change (points)",
                                        "95% interval", "p"])
    frame["Holm p"] = frame.groupby("student")["p"].transform(lambda p: holm(p.to_numpy())) if len(frame) else []
    return frame.round({"p": 3, "Holm p": 3})


def dedicated_checks(pairs, replicates: int, seed: int = 0) -> pd.DataFrame:
    """Is a branch model finished? Per pair ``(grid run, dedicated run)``: the paired EER difference at B.

    The grid run's model at B is the end of a decay branch off a constant-rate trunk; the dedicated
    run trained for B images with its own schedule decayed linearly to zero at B. ``dedicated -
    branch`` near zero says the branch delivers what a run budgeted to B delivers.
    """
    rows = []
    for grid_dir, dedicated_dir in pairs:
        grid, dedicated = load_trial_scores(grid_dir), load_trial_scores(dedicated_dir)
        difference = compare_scores(dedicated, grid, "eer", replicates, seed, names=(dedicated_dir, grid_dir))
        label = display_label(read_record(grid_dir))
        rows.append({"model": label, "branch model at B: EER %": 100 * (
            _eer(grid)), "dedicated run: EER %": 100 * _eer(dedicated),
            "dedicated - branch (points)": 100 * difference.difference,
            "95% interval": interval_text(difference.ci_low, difference.ci_high),
            "p": difference.p_value})
    return pd.DataFrame(rows, columns=["model", "branch model at B: EER %", "dedicated run: EER %",
                                       "dedicated - branch (points)", "95% interval", "p"])


def _eer(scores: dict) -> float:
    from ..verification.metrics import eer

    genuine = scores["genuine"].astype(bool)
    return eer(scores["scores"][genuine], scores["scores"][~genuine])


def calibration_table(datasets: int = 60, replicates: int = 100, subjects: int = 40, seed: int = 0) -> pd.DataFrame:
    """False-positive rate of the paired EER test at 0.05 on simulated null data sets, per resampling scheme.

    A small version of ``benchmarks/paired_calibration.py`` (:mod:`ocular_utils.verification.calibration`).
    """
    from ..verification.calibration import EFFECT_SIDES, Design, rejection_rate

    rows = []
    for k, side in enumerate(EFFECT_SIDES):
        result = rejection_rate(Design(subjects=subjects, effect_side=side), datasets, replicates, seed=seed + k)
        rows.append({"identity effects (simulated)": side, "data sets": datasets,
                     "false-positive rate, both subjects resampled (the study)": result["rate"]["both"],
                     "false-positive rate, probe subject only": result["rate"]["probe"]})
    return pd.DataFrame(rows)
