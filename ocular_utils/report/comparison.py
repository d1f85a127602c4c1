"""The paper's question on the data at hand: pruning versus distilled students, and the verdicts.

Verdicts compare point estimates *and* 95% subject-bootstrap intervals: a difference whose
intervals overlap is reported as "same direction, not separated by the data" rather than as a win.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..compression.distillation import KD_STUDENT
from ..compression.registry import UNSTRUCTURED
from .tables import intervals_separate, with_interval

PAPER_FINDINGS = {
    "best_method_at_8": "At compression 8, layerwise magnitude is the best of the five pruning methods.",
    "best_ratio": "Compression 8 is the best pruning setting: the most compression before verification suffers.",
    "kd_accuracy": "Knowledge distillation gives lower EER than pruning.",
    "kd_time": "Knowledge distillation gives shorter deep-feature-extraction time than pruning.",
}


def equal_compression(models: pd.DataFrame) -> pd.DataFrame:
    """For each distilled student, the pruned models at the grid ratio nearest to the student's compression."""
    pruned = models[models["kind"] == "prune"]
    rows = []
    for _, student in models[models["family"] == KD_STUDENT].iterrows():
        if pruned.empty:
            break
        ratios = np.array(sorted(pruned["requested"].unique()))
        nearest = ratios[np.argmin(np.abs(np.log(ratios) - np.log(student["compression"])))]
        rows.append(student.to_dict() | {"group": student["label"], "role": "student", "partner_family": None})
        at_ratio = pruned[pruned["requested"] == nearest]
        for family, group in at_ratio.groupby("family"):
            best = group.loc[group["eer"].idxmin()]
            rows.append(best.to_dict() | {"group": student["label"], "role": f"best {family} at {nearest:g}x",
                                          "partner_family": family})
    return pd.DataFrame(rows)


def paper_verdicts(models: pd.DataFrame) -> pd.DataFrame:
    """The paper's three findings next to ours, with agree / disagree and the reason.

    ``models`` is :attr:`ocular_utils.report.tables.StudyResults.models` (typed columns and ``median_ms``).
    """
    rows = []
    pruned = models[models["family"] == UNSTRUCTURED]
    students = models[models["family"] == KD_STUDENT]
    at8 = pruned[pruned["requested"] == 8]
    paper = at8[at8["method"] == "layer_weight"]
    if paper.empty:
        rows.append({"finding": PAPER_FINDINGS["best_method_at_8"], "ours": "layer_weight 8x not run",
                     "verdict": "not tested", "reason": "the grid has no layer_weight run at 8x"})
    else:
        best, ours = at8.loc[at8["eer"].idxmin()], paper.iloc[0]
        if best["run"] == ours["run"]:
            verdict, reason = "agree", "layer_weight has the lowest EER of the five methods at 8x"
        elif not intervals_separate(best, ours):
            verdict = "agree within uncertainty"
            reason = (f"{best['label']} is lower ({100 * best['eer']:.2f}% vs {100 * ours['eer']:.2f}%) but the "
                      "intervals overlap")
        else:
            verdict = "disagree"
            reason = (f"{best['label']} ({100 * best['eer']:.2f}%) beats layer_weight 8x ({100 * ours['eer']:.2f}%) "
                      "and the intervals do not overlap")
        rows.append({"finding": PAPER_FINDINGS["best_method_at_8"], "ours": f"best at 8x: {best['label']}",
                     "verdict": verdict, "reason": reason})
    base = models[models["kind"] == "base"]
    if len(pruned) and len(base):
        base = base.iloc[0]
        lossless = pruned[pruned["eer ci_low"] <= base["eer ci_high"]]
        if lossless.empty:
            verdict, ours, reason = "disagree", "none", "every pruned model is measurably worse than the base"
        else:
            top = lossless.loc[lossless["requested"].idxmax()]
            ours = f"{top['label']} ({100 * top['eer']:.2f}%, base {100 * base['eer']:.2f}%)"
            verdict = "agree" if top["requested"] == 8 else "disagree"
            reason = (f"the highest compression whose EER interval still overlaps the base's is {top['requested']:g}x"
                      + ("" if top["requested"] == 8 else " (not 8x)"))
        rows.append({"finding": PAPER_FINDINGS["best_ratio"], "ours": ours, "verdict": verdict, "reason": reason})
    if len(pruned) and len(students):
        pairs = equal_compression(models)
        wins, separated, total = 0, 0, 0
        for group, part in pairs.groupby("group"):
            student = part[part["role"] == "student"].iloc[0]
            rivals = part[part["partner_family"] == UNSTRUCTURED]
            for _, rival in rivals.iterrows():
                total += 1
                wins += student["eer"] < rival["eer"]
                separated += student["eer"] < rival["eer"] and intervals_separate(student, rival)
        if total == 0:
            verdict, reason = "not tested", "no pruned model near the students' compression"
        elif wins == total:
            verdict = "agree" if separated == total else "agree in direction"
            reason = (f"every distilled student has lower EER than the best unstructured pruning at its compression "
                      f"({separated} of {total} comparisons separated by the intervals)")
        elif wins == 0:
            verdict = "disagree"
            reason = f"no distilled student beats the best unstructured pruning at its compression (0 of {total})"
        else:
            verdict = "mixed"
            reason = f"{wins} of {total} students beat the best unstructured pruning at their compression"
        rows.append({"finding": PAPER_FINDINGS["kd_accuracy"], "ours": f"{wins} of {total} comparisons favour KD",
                     "verdict": verdict, "reason": reason})
        if "median_ms" in models and models["median_ms"].notna().any():
            fastest_pruned = pruned["median_ms"].min()
            faster = students[students["median_ms"] < fastest_pruned]
            verdict = "agree" if len(faster) == len(students) else ("mixed" if len(faster) else "disagree")
            reason = (f"{len(faster)} of {len(students)} students run faster than the fastest unstructured pruned "
                      f"model ({fastest_pruned:.2f} ms); unstructured zeros do not speed up dense kernels")
            rows.append({"finding": PAPER_FINDINGS["kd_time"],
                         "ours": f"students {students['median_ms'].min():.2f}-{students['median_ms'].max():.2f} ms, "
                                 f"unstructured pruned {fastest_pruned:.2f}-{pruned['median_ms'].max():.2f} ms",
                         "verdict": verdict, "reason": reason})
    return pd.DataFrame(rows, columns=["finding", "ours", "verdict", "reason"])


def pairs_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """The student-versus-pruning pairs as the chapter shows them (EER with interval, latency, MACs)."""
    latency = pairs["median_ms"].round(2) if "median_ms" in pairs else np.nan
    shown = pairs.assign(**{"EER % [95% CI]": with_interval(pairs), "compression": pairs["compression"].round(2),
                            "latency ms": latency, "MACs (M)": (pairs["macs"] / 1e6).round(1)})
    return shown[["group", "role", "label", "compression", "training_images", "EER % [95% CI]", "latency ms",
                  "MACs (M)"]].set_index(["group", "role"])


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


def teacher_effect(students: pd.DataFrame) -> pd.DataFrame:
    """Per student, the EER change from the no-teacher control to each KD loss, and whether the intervals separate."""
    rows = []
    for name, group in students.groupby("student"):
        control = group[group["loss"] == "none"]
        if control.empty:
            continue
        c = control.iloc[0]
        for _, r in group[group["loss"] != "none"].iterrows():
            rows.append({"student": name, "loss": r["loss"], "control EER %": round(100 * c["eer"], 2),
                         "KD EER %": round(100 * r["eer"], 2), "change (points)": round(100 * (r["eer"] - c["eer"]), 2),
                         "intervals separate": intervals_separate(r, c)})
    return pd.DataFrame(rows)
