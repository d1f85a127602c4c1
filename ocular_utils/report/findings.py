"""What each chapter found, as a few values glued for the book's prose (``myst_nb.glue``).

A chapter notebook computes its tables, then passes them to one ``*_findings`` function here and
the result to :func:`glue_findings`; its opening paragraph pastes the values with
``{glue:text}`key:.2f``` and the intro's headline table pastes them from the chapter with
``{glue:text}`chapter::key```. EERs are in percent; strings are for display only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.paths import resolve
from ..core.records import read_record
from .display import interval_cell, interval_text
from .verdicts import QUESTIONS


class _Text(str):
    """A string displayed as written: plain text without quotes (``{glue:text}``) and Markdown (``{glue:}``)."""

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))

    def _repr_markdown_(self):
        return str(self)


def _plain(value):
    if isinstance(value, str):
        return _Text(value)
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def glue_findings(values: dict) -> dict:
    """Glue every value under its key (not displayed) for ``{glue:text}``; returns the values."""
    from myst_nb import glue

    for key, value in values.items():
        glue(key, _plain(value), display=False)
    return values


def machine_text(env: dict) -> str:
    """One line for a machine description (``core.environment.describe_machine``), e.g. ``AMD EPYC (2 cores), ...``."""
    return (f"{env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores), {env.get('system', '')} "
            f"{env.get('machine', '')}, torch {env.get('torch', '?')}" + (f", CUDA {env['cuda']}" if env.get("cuda")
                                                                         else ""))


def machines(run_dirs) -> str:
    """The distinct machines the runs' records came from, joined by ``; ``."""
    seen = []
    for run_dir in run_dirs:
        env = (read_record(resolve(run_dir)) or {}).get("environment") or {}
        if env and machine_text(env) not in seen:
            seen.append(machine_text(env))
    return "; ".join(seen) if seen else "not recorded"


def data_findings(card: dict, sizes: pd.DataFrame, trials: pd.DataFrame) -> dict:
    """Subjects, images, split and trial counts of the data chapter."""
    parts = sizes.set_index("part")
    return {"data_name": card["name"], "data_kind": "synthetic" if card["synthetic"] else "real",
            "data_subjects": card["subjects"], "data_images": card["images"],
            "data_train_subjects": int(parts.loc["train", "subjects"]), "data_val_subjects":
                int(parts.loc["val", "subjects"]), "data_test_subjects": int(parts.loc["test", "subjects"]),
            "data_genuine": int(trials["genuine"].sum()), "data_impostor": int((~trials["genuine"]).sum())}


def baseline_findings(report: dict, best_epoch: int, validation_eer: float, params: int, backbone: str) -> dict:
    """The base model's EER with its interval, TAR at FAR 1%, selected epoch and size."""
    return {"base_backbone": backbone, "base_eer": 100 * report["eer"], "base_eer_low": 100 * report["eer ci_low"],
            "base_eer_high": 100 * report["eer ci_high"], "base_tar_far1": 100 * report["tar@far=0.01"],
            "base_epoch": int(best_epoch), "base_validation_eer": 100 * validation_eer,
            "base_params_m": params / 1e6}


def _best(frame: pd.DataFrame) -> pd.Series:
    """The row with the lowest *validation* EER (a choice is never made on test trials); test EER breaks no tie."""
    if "validation_eer" not in frame or frame["validation_eer"].isna().all():
        raise ValueError("choosing the best model needs validation EER; these rows have none")
    return frame.sort_values("validation_eer", kind="stable").iloc[0]


def pruning_findings(unstructured: pd.DataFrame, channel: pd.DataFrame, base: pd.Series, headline: float) -> dict:
    """The best unstructured and channel pruning settings at the headline ratio and overall."""
    at = unstructured[np.isclose(unstructured["requested_compression"], headline)]
    best_at, best = _best(at), _best(unstructured)
    values = {"pruning_headline": f"{headline:g}x", "pruning_base_eer": 100 * base["metrics.eer"],
              "pruning_best_label": best_at["label"], "pruning_best_eer": 100 * best_at["eer"],
              "pruning_best_vs_base": 100 * (best_at["eer"] - base["metrics.eer"]),
              "pruning_overall_label": best["label"], "pruning_overall_eer": 100 * best["eer"],
              "pruning_settings": len(unstructured) + len(channel)}
    channel_at = channel[np.isclose(channel["requested_compression"], headline)]
    if len(channel_at):
        values |= {"channel_best_label": _best(channel_at)["label"], "channel_best_eer": 100 * _best(channel_at)["eer"]}
    else:
        values |= {"channel_best_label": "no channel pruning at this ratio", "channel_best_eer": float("nan")}
    return values


def distillation_findings(students: pd.DataFrame, base: pd.Series) -> dict:
    """The best distilled student and the best no-teacher control."""
    kd = students[students["loss"].fillna("none") != "none"]
    control = students[students["loss"].fillna("none") == "none"]
    best = _best(kd if len(kd) else students)
    values = {"student_best_label": best["label"], "student_best_eer": 100 * best["eer"],
              "student_best_params_m": best["params"] / 1e6, "student_teacher_eer": 100 * base["metrics.eer"],
              "student_count": len(students)}
    values |= ({"student_control_label": _best(control)["label"], "student_control_eer": 100 * _best(control)["eer"]}
               if len(control) else {"student_control_label": "no control", "student_control_eer": float("nan")})
    return values


def comparison_findings(verdicts: pd.DataFrame) -> dict:
    """One verdict text per finding (``verdict_<key>``), e.g. ``inconclusive (resnet18 (logit))``."""
    values = {}
    for key in QUESTIONS:
        rows = verdicts[verdicts["key"] == key]
        values[f"verdict_{key}"] = "; ".join(f"{row['verdict']} ({row['on']})" if row["on"] not in ("", "-")
                                             else str(row["verdict"]) for _, row in rows.iterrows()) or "not tested"
    return values


def phone_findings(models: pd.DataFrame, budgets: pd.DataFrame, verdict: dict) -> dict:
    """The fp32 base, its int8 version, the best combined route and the best model under each budget."""
    base = models[models["category"] == "base"].iloc[0]
    values = {"phone_base_eer": 100 * base["eer"], "phone_base_ms": base["executorch_ms"],
              "phone_base_mb": base["pte_mb"], "phone_verdict": verdict["verdict"],
              "phone_verdict_winner": verdict.get("winner", "none"), "phone_models": len(models)}
    for category in ("quantization", "combination", "pruning", "distillation"):
        rows = models[models["category"] == category]
        prefix = f"phone_{category}"
        if len(rows):
            best = _best(rows)
            values |= {f"{prefix}_label": best["label"], f"{prefix}_eer": 100 * best["eer"],
                       f"{prefix}_vs_base": 100 * best["vs_base"], f"{prefix}_speedup": best["speedup"],
                       f"{prefix}_mb": best["pte_mb"]}
        else:
            values |= {f"{prefix}_label": "none", f"{prefix}_eer": float("nan"), f"{prefix}_vs_base": float("nan"),
                       f"{prefix}_speedup": float("nan"), f"{prefix}_mb": float("nan")}
    for index, row in budgets.reset_index(drop=True).iterrows():
        values[f"phone_budget_{index}"] = (f"{row['budget']}: {row['label']}" if pd.isna(row.get("eer")) else
                                           f"{row['budget']}: {row['label']}, EER {100 * row['eer']:.2f}% "
                                           f"({100 * row['vs_base']:+.2f} points)")
    return values


def latency_findings(ratios: pd.DataFrame, base_label: str, study_input: str) -> dict:
    """The base's latency per runtime at the study input and the fastest representative model's speed-up."""
    at = ratios[(ratios["input"] == study_input)]
    base = at[at["label"] == base_label].set_index("runtime")["median_ms"]
    others = at[(at["label"] != base_label) & (at["runtime"] == "executorch")]
    fastest = others.sort_values("speedup", ascending=False).iloc[0] if len(others) else None
    return {"latency_input": study_input, "latency_base_eager_ms": float(base.get("eager", float("nan"))),
            "latency_base_executorch_ms": float(base.get("executorch", float("nan"))),
            "latency_fastest_label": fastest["label"] if fastest is not None else "none",
            "latency_fastest_speedup": float(fastest["speedup"]) if fastest is not None else float("nan")}


def timing_findings(phases: pd.DataFrame) -> dict:
    """Total recorded seconds over all runs (from :func:`report.timing.phase_table`) and the kind that took most."""
    totals = phases["total"] if len(phases) else pd.Series(dtype=float)
    return {"timing_total_hours": float(totals.sum()) / 3600,
            "timing_largest_kind": str(totals.idxmax()) if len(totals) else "none",
            "timing_largest_share": 100 * float(totals.max() / totals.sum()) if len(totals) else float("nan")}


def _change_text(row, what: str) -> str:
    if row is None:
        return "not measured (too few test subjects)"
    floor = 1 / (row["replicates"] + 1)
    p_text = (f"at most {floor:.4f}, the smallest p {row['replicates']} draws can give" if row["p_family"] <= floor
              else format(row["p_family"], ".3f"))
    return (f"{row['model']}, {row[what]}: {100 * row['change']:+.2f} points "
            f"{interval_text(row['ci_low'], row['ci_high'])} against {row['against']}; picked as the largest of "
            f"{row['tests']} tested changes, whose simultaneous 95% interval is "
            f"{interval_text(row['band_low'], row['band_high'])} (max-T family-wise p {p_text})")


def who_pays_findings(analysis, changes: pd.DataFrame, gap_changes: pd.DataFrame, ratios: pd.DataFrame) -> dict:
    """The who-pays chapter's values (``analysis``: a :class:`.who_pays.WhoPays`): the largest condition change and
    group-gap change of compression against the base, with their intervals and a family-wise test over every change
    they were picked from, how many condition cells got worse and how many models widen a gap."""
    condition = analysis.largest_change("condition", "base")
    group = analysis.largest_change("gap", "base") if len(gap_changes) else None
    base_ratio = ratios.iloc[0] if len(ratios) else None
    return {
        "pays_condition_text": _change_text(condition, "condition"),
        "pays_group_text": _change_text(group, "attribute"),
        "pays_paid_cells": int(changes["paid"].eq(True).sum()) if len(changes) else 0,  # None: not tested
        "pays_tested_cells": int(changes["p"].notna().sum()) if len(changes) else 0,
        "pays_widening_models": int(gap_changes.loc[gap_changes["widens"].eq(True), "model"].nunique())
        if len(gap_changes) else 0,
        "pays_models": int(changes["model"].nunique()) if len(changes) else 0,
        "pays_base_phone_ratio": "n/a" if base_ratio is None or pd.isna(base_ratio["ratio"])
        else interval_cell(base_ratio["ratio"], base_ratio["ci_low"], base_ratio["ci_high"], scale=1),
    }
