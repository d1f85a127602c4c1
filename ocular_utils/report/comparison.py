"""The paper's question on the data at hand: pruning versus distilled students, and the verdicts.

Every verdict rests on *paired* comparisons: two models scored on the identical test trials, the
difference of their EER with a subject-bootstrap interval and p-value
(:func:`ocular_utils.verification.paired.paired_difference`), Holm-corrected within each finding.
A comparison counts as a finding only when the adjusted p is below ``ALPHA``, the interval excludes
zero, both models were trained for the same budget and are converged at it, and the difference is
larger than the spread across seeds. "Disagree" needs such a finding against the paper's direction;
anything short of the conditions is "inconclusive", with the reason.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..compression.distillation import KD_STUDENT
from ..compression.registry import UNSTRUCTURED
from ..verification.paired import holm, paired_difference
from ..verification.scoring import load_trial_scores
from .tables import identity_key, intervals_separate

PAPER_METHOD = "layer_weight"  # the paper's best pruning method
FAIR_FACTOR = 1.5  # a student's partners are within this factor of its compression
ALPHA = 0.05
LATENCY_MARGIN = 0.10  # latency differences within 10% are not a finding
# Bootstrap replicates of the verdicts' comparisons at least: the smallest p-value is 2 / (n + 1), and
# Holm multiplies it by up to 7 comparisons (a student against every pruning method)
VERDICT_REPLICATES = 1000
IDENTITY = ["kind", "method", "requested", "student", "kd_loss"]

PAPER_FINDINGS = {
    "best_method": "At the headline compression (8x), layerwise magnitude is the best of the five pruning methods.",
    "best_ratio": "Compression 8 is the best pruning setting: the most compression before verification suffers.",
    "kd_accuracy": "Knowledge distillation gives lower EER than pruning.",
    "kd_time": "Knowledge distillation gives shorter deep-feature-extraction time than pruning.",
}


def fair_ratio(compression: float, grid, factor: float = FAIR_FACTOR) -> float | None:
    """The grid ratio nearest (in log scale) to ``compression`` if within ``factor`` of it, else ``None``.

    With a grid that doubles (2, 4, 8, ...) every compression inside it has a ratio within sqrt(2).
    """
    ratios = np.array(sorted(float(r) for r in grid))
    if not len(ratios) or not compression or compression <= 0:
        return None
    nearest = float(ratios[np.argmin(np.abs(np.log(ratios) - math.log(compression)))])
    return nearest if max(nearest / compression, compression / nearest) <= factor else None


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
                     "range (points)": round(eer.max() - eer.min(), 2), "_id": group["_id"].iloc[0]})
    return pd.DataFrame(rows, columns=["model", "family", "seeds", "EER mean %", "EER sd", "EER min %", "EER max %",
                                       "range (points)", "_id"])


def _spread(row: pd.Series, spreads: pd.DataFrame) -> float:
    """The seed range (points) of a model, or the largest range of any model run with seeds; NaN if none."""
    if spreads.empty:
        return float("nan")
    own = spreads.loc[spreads["_id"] == "|".join(str(row[c]) for c in IDENTITY), "range (points)"]
    return float(own.iloc[0]) if len(own) else float(spreads["range (points)"].max())


def finding_pairs(models: pd.DataFrame, headline: float = 8) -> list[tuple[str, str, pd.Series, pd.Series]]:
    """``(finding, group, a, b)`` for every paired comparison behind the verdicts (grid runs, seed 0).

    best_method: the paper's method against each other unstructured method at ``headline``;
    best_ratio: the paper's method at ``headline`` and at twice it against the base;
    kd_accuracy: per student, its best distilled version (by validation EER) against every pruning
    method at the grid ratio within 1.5x of the student's compression.
    """
    models = primary(models)
    pairs = []
    pruned = models[models["kind"] == "prune"]
    unstructured = pruned[pruned["family"] == UNSTRUCTURED]
    at = unstructured[np.isclose(unstructured["requested"], headline)]
    paper = at[at["method"] == PAPER_METHOD]
    for _, other in at[at["method"] != PAPER_METHOD].iterrows():
        if len(paper):
            pairs.append(("best_method", f"{PAPER_METHOD} at {headline:g}x", paper.iloc[0], other))
    base = models[models["kind"] == "base"]
    for ratio in (headline, 2 * headline):
        row = unstructured[(unstructured["method"] == PAPER_METHOD) & np.isclose(unstructured["requested"], ratio)]
        if len(row) and len(base):
            pairs.append(("best_ratio", f"{PAPER_METHOD} against the base", row.iloc[0], base.iloc[0]))
    grid = sorted(pruned["requested"].unique())
    students = models[models["family"] == KD_STUDENT]
    for name, group in students.groupby("student"):
        best = group.loc[group[_selection_column(group)].idxmin()]
        ratio = fair_ratio(best["compression"], grid)
        partners = pruned[np.isclose(pruned["requested"], ratio)] if ratio else pruned.iloc[:0]
        for _, partner in partners.iterrows():
            pairs.append(("kd_accuracy", f"{best['label']} (compression {best['compression']:.1f}x)", best, partner))
    return pairs


def _selection_column(frame: pd.DataFrame) -> str:
    """Models are chosen on validation EER where the records have it (never on test)."""
    return "validation_eer" if "validation_eer" in frame and frame["validation_eer"].notna().all() else "eer"


def _scores(row: pd.Series, cache: dict) -> dict:
    if row["run_dir"] not in cache:
        cache[row["run_dir"]] = load_trial_scores(row["run_dir"])
    return cache[row["run_dir"]]


def paired_comparisons(models: pd.DataFrame, replicates: int, seed: int = 0, headline: float = 8,
                       scores: dict | None = None) -> pd.DataFrame:
    """Every comparison behind the verdicts: paired EER difference (a - b, points), interval, Holm p, conditions.

    ``scores`` maps run folders to :func:`~ocular_utils.verification.scoring.load_trial_scores` dicts
    (read from disk when missing). Runs scored on different trial lists are refused.
    """
    cache = dict(scores or {})
    spreads = seed_summary(models)
    rows = []
    for finding, group, a, b in finding_pairs(models, headline):
        sa, sb = _scores(a, cache), _scores(b, cache)
        if sa["trial_list"] != sb["trial_list"]:
            raise ValueError(f"{a['label']} and {b['label']} were scored on different trial lists; "
                             "a paired comparison needs the same trials")
        change = paired_difference(sa["scores"], sb["scores"], sa["genuine"], sa["subjects"], "eer", replicates, seed)
        rows.append({"finding": finding, "group": group, "a": a["label"], "b": b["label"],
                     "difference": 100 * change.difference, "ci_low": 100 * change.ci_low,
                     "ci_high": 100 * change.ci_high, "p": change.p_value,
                     "budget a": a["training_images"], "budget b": b["training_images"],
                     "matched": b["kind"] == "base" or a["training_images"] == b["training_images"],
                     "converged a": a["converged"], "converged b": True if b["kind"] == "base" else b["converged"],
                     "seed spread": max(_spread(a, spreads), _spread(b, spreads))})
    columns = ["finding", "group", "a", "b", "difference", "ci_low", "ci_high", "p", "p_holm", "budget a",
               "budget b", "matched", "converged a", "converged b", "seed spread", "finding holds", "why not"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    frame["p_holm"] = frame.groupby(["finding", "group"])["p"].transform(lambda p: holm(p.to_numpy()))
    why = frame.apply(_why_not, axis=1)
    return frame.assign(**{"finding holds": why == "", "why not": why})[columns]


def _state(value) -> bool | None:
    """A convergence flag as True, False or None (not checked), whatever pandas stored it as."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else bool(value)


def _why_not(row: pd.Series) -> str:
    """Why a comparison is not a finding ('' when it is)."""
    reasons = []
    if not (row["p_holm"] < ALPHA and (row["ci_low"] > 0 or row["ci_high"] < 0)):
        reasons.append(f"Holm p {row['p_holm']:.3f}, interval includes 0" if row["ci_low"] <= 0 <= row["ci_high"]
                       else f"Holm p {row['p_holm']:.3f} >= {ALPHA}")
    if not row["matched"]:
        reasons.append("budgets differ")
    states = (_state(row["converged a"]), _state(row["converged b"]))
    if states != (True, True):
        reasons.append("not converged" if False in states else "convergence not checked")
    if not np.isfinite(row["seed spread"]):
        reasons.append("no seed spread measured")
    elif abs(row["difference"]) <= row["seed spread"]:
        reasons.append(f"|difference| within the seed spread ({row['seed spread']:.2f} points)")
    return "; ".join(reasons)


def statistic_text(row: pd.Series) -> str:
    """One comparison as the verdict table cites it."""
    converged = {True: "yes", False: "no", None: "not checked"}
    state_a, state_b = _state(row["converged a"]), _state(row["converged b"])
    budget = f"{int(row['budget a']):,}" + ("" if row["matched"] else f" vs {int(row['budget b']):,}")
    return (f"{row['a']} - {row['b']}: {row['difference']:+.2f} points [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}], "
            f"Holm p {row['p_holm']:.3f}; budget {budget} images; converged {converged[state_a]}/"
            f"{converged[state_b]}; seed spread {row['seed spread']:.2f} points")


def _verdict_row(finding: str, subject: str, verdict: str, rows: pd.DataFrame, reason: str) -> dict:
    return {"finding": PAPER_FINDINGS[finding], "on": subject, "verdict": verdict,
            "statistics": "\n".join(statistic_text(r) for _, r in rows.iterrows()), "reason": reason}


def paper_verdicts(comparisons: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """The paper's four findings against ours: agree / disagree / inconclusive, each with its statistics."""
    out = []
    for (finding, group), rows in comparisons.groupby(["finding", "group"], sort=False):
        better = rows["finding holds"] & (rows["difference"] < 0)  # a has the lower EER, measurably
        worse = rows["finding holds"] & (rows["difference"] > 0)
        blocking = "; ".join(f"{r['a']} vs {r['b']}: {r['why not']}"
                             for _, r in rows[~rows["finding holds"]].iterrows())
        if finding == "best_ratio":
            at, beyond = rows.iloc[0], rows.iloc[1] if len(rows) > 1 else None
            if worse.iloc[0]:
                verdict, reason = "disagree", f"{at['a']} is measurably worse than the base"
            elif beyond is not None and worse.iloc[1] and _state(at["converged a"]):
                verdict, reason = "agree", (f"{at['a']} is not measurably worse than the base and {beyond['a']} is")
            else:
                verdict, reason = "inconclusive", "no finding: " + (blocking or "no comparison beyond the headline")
        elif worse.any():
            verdict = "disagree"
            reason = "measurably better than " + group.split(" (")[0] + ": " + ", ".join(rows.loc[worse, "b"])
        elif better.all():
            verdict, reason = "agree", f"measurably better than all {len(rows)} partners"
        else:
            verdict, reason = "inconclusive", "no finding: " + blocking
        out.append(_verdict_row(finding, group, verdict, rows, reason))
    out += latency_verdicts(models)
    for finding in PAPER_FINDINGS:
        if not any(row["finding"] == PAPER_FINDINGS[finding] for row in out):
            out.append({"finding": PAPER_FINDINGS[finding], "on": "-", "verdict": "not tested", "statistics": "",
                        "reason": "the records hold no models for this comparison (or no student has a partner "
                                  f"within {FAIR_FACTOR}x of its size)"})
    order = {text: i for i, text in enumerate(PAPER_FINDINGS.values())}
    return pd.DataFrame(out).sort_values("finding", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def latency_verdicts(models: pd.DataFrame) -> list[dict]:
    """Students against the pruned models of about their size in eager latency (a difference under 10% is none)."""
    if "median_ms" not in models or models["median_ms"].isna().all():
        return []
    models = primary(models)
    pruned = models[models["kind"] == "prune"]
    out = []
    for _, student in models[models["family"] == KD_STUDENT].sort_values("eer").drop_duplicates("student").iterrows():
        ratio = fair_ratio(student["compression"], sorted(pruned["requested"].unique()))
        partners = pruned[np.isclose(pruned["requested"], ratio)].dropna(subset=["median_ms"]) if ratio else []
        if not len(partners):
            continue
        fastest = partners.loc[partners["median_ms"].idxmin()]
        relative = student["median_ms"] / fastest["median_ms"] - 1
        verdict = "agree" if relative < -LATENCY_MARGIN else "disagree" if relative > LATENCY_MARGIN else "inconclusive"
        text = (f"{student['label']} {student['median_ms']:.2f} ms vs fastest partner at {ratio:g}x, "
                f"{fastest['label']}, {fastest['median_ms']:.2f} ms ({100 * relative:+.0f}%)")
        out.append({"finding": PAPER_FINDINGS["kd_time"], "on": student["label"], "verdict": verdict,
                    "statistics": text, "reason": f"differences within {100 * LATENCY_MARGIN:.0f}% are timing noise; "
                    "unstructured zeros do not speed up dense kernels"})
    return out


def partners_table(models: pd.DataFrame) -> pd.DataFrame:
    """Each student and its fair partners (pruned models within 1.5x of its compression), or why it has none."""
    models = primary(models)
    pruned = models[models["kind"] == "prune"]
    grid = sorted(pruned["requested"].unique())
    rows = []
    for _, student in models[models["kind"] == "distill"].iterrows():
        ratio = fair_ratio(student["compression"], grid)
        rows.append({"student": student["label"], "compression": round(student["compression"], 2),
                     "partner ratio": ratio if ratio else f"none within {FAIR_FACTOR}x",
                     "partners": int(np.isclose(pruned["requested"], ratio).sum()) if ratio else 0})
    return pd.DataFrame(rows)


def best_setting_text(unstructured: pd.DataFrame) -> str:
    """A sentence on the best unstructured setting, and how the paper's (layer_weight at 8x) compares with it."""
    best = unstructured.loc[unstructured["eer"].idxmin()]
    text = (f"Lowest EER among unstructured settings: **{best['method']} at {best['requested']:g}x** "
            f"({100 * best['eer']:.2f}%, interval {100 * best['eer ci_low']:.2f} to {100 * best['eer ci_high']:.2f}).")
    paper = unstructured[(unstructured["method"] == "layer_weight") & (unstructured["requested"] == 8)]
    if len(paper):
        p = paper.iloc[0]
        text += (f" The paper's best setting, layer_weight at 8x, reaches {100 * p['eer']:.2f}% "
                 f"[{100 * p['eer ci_low']:.2f}, {100 * p['eer ci_high']:.2f}]; its interval "
                 f"{'does not overlap' if intervals_separate(p, best) else 'overlaps'} that of the best setting here.")
    return text


def teacher_effect(students: pd.DataFrame, replicates: int, seed: int = 0, scores: dict | None = None
                   ) -> pd.DataFrame:
    """Per student, the paired EER change from the no-teacher control to each KD loss (KD - control, points).

    Same trials for both, subjects resampled together; Holm-corrected over each student's losses.
    """
    cache, rows = dict(scores or {}), []
    for name, group in students.groupby("student"):
        control = group[group["loss"] == "none"]
        if control.empty:
            continue
        c = control.iloc[0]
        for _, r in group[group["loss"] != "none"].iterrows():
            kd, base = _scores(r, cache), _scores(c, cache)
            change = paired_difference(kd["scores"], base["scores"], kd["genuine"], kd["subjects"], "eer", replicates,
                                       seed)
            rows.append({"student": name, "loss": r["loss"], "control EER %": round(100 * c["eer"], 2),
                         "KD EER %": round(100 * r["eer"], 2), "change (points)": round(100 * change.difference, 2),
                         "95% interval": f"[{100 * change.ci_low:+.2f}, {100 * change.ci_high:+.2f}]",
                         "p": change.p_value})
    frame = pd.DataFrame(rows, columns=["student", "loss", "control EER %", "KD EER %", "change (points)",
                                        "95% interval", "p"])
    frame["Holm p"] = frame.groupby("student")["p"].transform(lambda p: holm(p.to_numpy())) if len(frame) else []
    return frame.round({"p": 3, "Holm p": 3})
