"""Verdict rules that say what they mean: the paper's findings against ours, from settled comparisons.

A comparison (:func:`ocular_utils.report.comparison.paired_comparisons`) is *settled* when it
says the same thing at its budget B and at 2B (both looks fixed in advance, both on the test
trials): for "a is lower than b", the paired difference is below zero and significant at both
looks; for "a is no worse than b", the 90% upper bound is below the margin delta at both looks and
the change of the difference from B to 2B lies within +-delta (90% interval). Requiring both looks
can only make a finding harder to reach, so no correction for the second look is needed. Where a
model has extra seeds, the mean of the per-seed differences must agree too (interval from the
between-seed variance).

* "a beats every partner" is an intersection-union test: every raw p below alpha (Berger 1982).
* "a is worse than at least one" takes Holm's correction within the group, at each look.
* The best setting is the largest ratio whose EER is non-inferior to the base (settled).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..compression.distillation import KD_STUDENT
from ..core.study import ALPHA, FAIR_FACTOR, fair_ratio
from .comparison import OUR_QUESTIONS, PAPER_FINDINGS, primary

LATENCY_MARGIN = 0.10  # latency differences within 10% are not a finding
QUESTIONS = PAPER_FINDINGS | OUR_QUESTIONS


def rules(margin: float, headline: float = 8) -> dict:
    """The rule that decides each finding, one line each (shown under its figure and in the table)."""
    lower = (f"agree: a's EER is below every partner's at B and at 2B, each raw p < {ALPHA:g} (intersection-union "
             f"test){{seeds}}; disagree: some partner is below a at both looks at Holm p < {ALPHA:g}; "
             "else inconclusive")
    seeds = ", and the mean over seeds agrees"
    return {
        "best_method": lower.format(seeds=seeds),
        "best_ratio": (f"the best setting is the largest ratio non-inferior to the base: 90% upper bound of the EER "
                       f"difference below +{margin:g} points at B and at 2B, its change from B to 2B within "
                       f"+-{margin:g}; agree if that is {headline:g}x and every larger ratio is settled worse "
                       f"(lower bound above 0 at both looks), disagree if it is settled at another ratio, else "
                       "inconclusive"),
        "kd_accuracy": lower.format(seeds=seeds) + " (students at the base's images + B: the same total training "
                                                   "as their pruned partners)",
        "kd_after_base": lower.format(seeds=seeds) + " (students trained for B images from scratch, partners "
                                                     "fine-tuned for B images after the base)",
        "kd_time": f"eager latency at batch 1: agree if the student is more than {100 * LATENCY_MARGIN:.0f}% faster "
                   f"than its fastest fair partner (within {FAIR_FACTOR}x of its size), disagree if more than "
                   f"{100 * LATENCY_MARGIN:.0f}% slower (a smaller difference is timing noise; unstructured zeros "
                   "do not speed up dense kernels, so pruned partners time as dense networks)",
    }


def _significant(row: pd.Series, look: str, sign: int, holm: bool = False) -> bool:
    p = row.get(f"{look} p_holm" if holm else f"{look} p", np.nan)
    if p is None or not np.isfinite(p):
        return False
    bound = row[f"{look} high"] < 0 if sign < 0 else row[f"{look} low"] > 0
    return bool(p < ALPHA and bound)


def _seeds_agree(row: pd.Series, sign: int | None, margin: float | None = None) -> bool:
    """The seed check: fewer than two seeds give no evidence either way (and block nothing)."""
    if not row["seeds"] >= 2:
        return True
    if sign is None:
        return bool(row["seed high"] < margin)
    return bool(row["seed high"] < 0) if sign < 0 else bool(row["seed low"] > 0)


def status(row: pd.Series, margin: float) -> str:
    """``lower``, ``higher`` (settled, Holm for higher), ``no worse``, ``worse`` (settled), or ``unsettled``."""
    if not row["matched"]:
        return "unsettled"
    if row["claim"] == "no worse":
        no_worse = (row["B high90"] < margin and row["2B high90"] < margin
                    and -margin < row["change low90"] and row["change high90"] < margin and _seeds_agree(row, None,
                                                                                                         margin))
        if no_worse:
            return "no worse"
        if _significant(row, "B", +1) and _significant(row, "2B", +1) and _seeds_agree(row, +1):
            return "worse"
        return "unsettled"
    if _significant(row, "B", -1) and _significant(row, "2B", -1) and _seeds_agree(row, -1):
        return "lower"
    if _significant(row, "B", +1, holm=True) and _significant(row, "2B", +1, holm=True) and _seeds_agree(row, +1):
        return "higher"
    return "unsettled"


def moving_text(row: pd.Series, margin: float, images: int) -> str:
    """Why a comparison is unsettled: which model still moved from B to 2B, and what budget the curves suggest."""
    if not np.isfinite(row.get("2B difference", np.nan)):
        return "no look at 2B: a model was not run past its budget"
    moved = {name: row[f"{side} moved"] for side, name in (("a", row["a"]), ("b", row["b"]))
             if np.isfinite(row[f"{side} moved"])}
    moving = {name: change for name, change in moved.items() if abs(change) > margin / 2}
    if moving:
        return ("still moving from B to 2B: " + ", ".join(f"{name} {change:+.2f} points" for name, change in
                                                         moving.items())
                + f"; the curves suggest budget.images >= {4 * images:,} (4B)")
    return (f"neither model moved more than {margin / 2:g} points from B to 2B: the difference is within the noise "
            "of this test set, which a longer budget would not settle")


def _lower_verdict(rows: pd.DataFrame, statuses: pd.Series) -> tuple[str, str]:
    if statuses.eq("higher").any():
        return "disagree", "lower EER at both looks (Holm): " + ", ".join(rows.loc[statuses.eq("higher"), "b"])
    if len(rows) and statuses.eq("lower").all():
        return "agree", f"lower EER than all {len(rows)} partners at B and 2B"
    unsettled = rows.loc[~statuses.eq("lower"), "b"]
    return "inconclusive", "not settled against: " + ", ".join(unsettled)


def _ratio_verdict(rows: pd.DataFrame, statuses: pd.Series, headline: float) -> tuple[str, str]:
    by_ratio = dict(zip(rows["ratio"], statuses))
    no_worse = [r for r, s in by_ratio.items() if s == "no worse"]
    if not no_worse:
        if by_ratio and all(s == "worse" for s in by_ratio.values()):
            return "disagree", "every ratio is settled worse than the base"
        return "inconclusive", "no ratio is settled non-inferior to the base"
    best = max(no_worse)
    above = {r: s for r, s in by_ratio.items() if r > best}
    unsettled = [f"{r:g}x" for r, s in above.items() if s != "worse"]
    if unsettled:
        return "inconclusive", (f"{best:g}x is the largest ratio settled non-inferior, but "
                                f"{', '.join(unsettled)} is not settled either way")
    if math.isclose(best, headline):
        return "agree", f"{best:g}x is the largest ratio non-inferior to the base; every larger ratio is worse"
    return "disagree", f"the best setting is {best:g}x (the largest ratio non-inferior to the base), not {headline:g}x"


def paper_verdicts(comparisons: pd.DataFrame, missing: list[tuple[str, str]], models: pd.DataFrame, margin: float,
                   images: int, headline: float = 8) -> pd.DataFrame:
    """The paper's findings (and our kd_after_base question) against ours: agree / disagree / inconclusive.

    Each row gives the verdict, the reason (with the statistic that decided it), the rule, how many of its
    comparisons were settled at B and 2B, and for those that were not, which model was still moving; every
    comparison's own statistics are rows of ``comparisons``.
    """
    text = rules(margin, headline)
    out = []
    gaps = {}
    for finding, reason in missing:
        gaps.setdefault(finding, []).append(reason)
    for (finding, group), rows in comparisons.groupby(["finding", "group"], sort=False):
        statuses = rows.apply(status, axis=1, margin=margin)
        if finding == "best_ratio":
            verdict, reason = _ratio_verdict(rows, statuses, headline)
        else:
            verdict, reason = _lower_verdict(rows, statuses)
        if finding in gaps:
            verdict, reason = "inconclusive", "missing: " + "; ".join(gaps.pop(finding))
        unsettled = rows[statuses.eq("unsettled")]
        out.append({"finding": QUESTIONS[finding], "key": finding, "on": group, "verdict": verdict, "reason": reason,
                    "rule": text[finding],
                    "settled": f"{int((~statuses.eq('unsettled')).sum())} of {len(rows)} comparisons settled at B "
                               "and 2B",
                    "still moving": "\n\n".join(f"{r['a']} vs {r['b']}: {moving_text(r, margin, images)}"
                                                for _, r in unsettled.iterrows())})
    out += latency_verdicts(models, text["kd_time"])
    for finding, reasons in gaps.items():
        out.append({"finding": QUESTIONS[finding], "key": finding, "on": "-", "verdict": "inconclusive",
                    "reason": "missing: " + "; ".join(reasons), "rule": text[finding], "settled": "",
                    "still moving": ""})
    for finding in QUESTIONS:
        if not any(row["key"] == finding for row in out):
            out.append({"finding": QUESTIONS[finding], "key": finding, "on": "-", "verdict": "not tested",
                        "reason": "the records hold no models for this comparison", "rule": text[finding],
                        "settled": "", "still moving": ""})
    order = {key: i for i, key in enumerate(QUESTIONS)}
    return pd.DataFrame(out).sort_values("key", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def latency_verdicts(models: pd.DataFrame, rule: str) -> list[dict]:
    """Students against the pruned models of about their size in eager latency (a difference under 10% is none).

    Each student's KD version is the one with the lowest *validation* EER.
    """
    if "median_ms" not in models or models["median_ms"].isna().all():
        return []
    models = primary(models)
    grid = models[models["role"].fillna("grid").eq("grid")] if "role" in models else models
    pruned = grid[grid["kind"] == "prune"]
    out = []
    students = grid[grid["family"] == KD_STUDENT].sort_values("validation_eer").drop_duplicates("student")
    for _, student in students.iterrows():
        ratio = fair_ratio(student["compression"], sorted(pruned["requested_compression"].unique()))
        partners = (pruned[np.isclose(pruned["requested_compression"], ratio)].dropna(subset=["median_ms"])
                    if ratio else [])
        if not len(partners):
            continue
        fastest = partners.loc[partners["median_ms"].idxmin()]
        relative = student["median_ms"] / fastest["median_ms"] - 1
        verdict = "agree" if relative < -LATENCY_MARGIN else "disagree" if relative > LATENCY_MARGIN else "inconclusive"
        statistic = (f"{student['median_ms']:.2f} ms against {fastest['median_ms']:.2f} ms of {fastest['label']}, "
                     f"the fastest partner at {ratio:g}x: {100 * relative:+.0f}%")
        out.append({"finding": PAPER_FINDINGS["kd_time"], "key": "kd_time", "on": student["label"], "verdict": verdict,
                    "reason": f"{statistic} (within +-{100 * LATENCY_MARGIN:.0f}% counts as no difference)",
                    "rule": rule, "settled": "", "still moving": ""})
    return out
