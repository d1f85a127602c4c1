"""The phone chapter's tables: every deployable model on the phone axes, budgets relative to the base, the verdict.

One row per deployable model: each route's parent (fp32: the base, channel- and unstructured-pruned
ResNet50s, students, pruned students) and its int8 version, with the EER measured through the
runtime, the paired EER difference to the base on the same trials, the ExecuTorch latency (batch 1)
at each input and the ``.pte`` size. Categories: pruning, distillation, quantization (int8 of the
base) and combination (int8 of a compressed model, or a pruned student).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import resolve
from ..core.records import display_label, read_record
from ..core.study import ALPHA
from ..verification.paired import compare_scores, holm, paired_looks
from ..verification.scoring import load_trial_scores
from .comparison import look_path
from .display import interval_text

BUDGETS = (("latency", 1 / 4), ("latency", 1 / 10), ("size", 1 / 8))  # fractions of the fp32 base (ExecuTorch)
TARGETS = {"int8_speedup_224": 2.5, "int8_size_ratio": 3.9, "int8_eer_points": 0.5, "route_speedup": 10.0,
           "route_eer_points": 1.0}


def _category(parent: dict, precision: str) -> str:
    kind = parent["kind"]
    compressed = kind != "base"
    pruned_student = kind == "prune" and read_record(resolve(parent["params"]["base_dir"]))["kind"] == "distill"
    if precision == "int8":
        return "combination" if compressed else "quantization"
    if pruned_student:
        return "combination"
    return {"base": "base", "prune": "pruning", "distill": "distillation"}[kind]


def _label(parent: dict) -> str:
    """A model's display label; a pruned student names its student too."""
    if parent["kind"] == "prune":
        upstream = read_record(resolve(parent["params"]["base_dir"]))
        if upstream["kind"] == "distill":
            return f"{display_label(upstream)}, {display_label(parent)}"
    return display_label(parent)


def route_models(quantized_runs, latency_table: pd.DataFrame, study_input: str) -> pd.DataFrame:
    """One row per deployable model (each route's fp32 parent and its int8 version) with its phone axes."""
    timed = latency_table[latency_table["scope"] == "routes"]
    rows = []
    for run_dir in quantized_runs:
        record = read_record(resolve(run_dir))
        parent_dir = record["params"]["parent_dir"]
        parent = read_record(resolve(parent_dir))
        run = Path(run_dir).name
        for precision in ("fp32", "int8"):
            times = timed[(timed["run"] == run) & (timed["precision"] == precision)]
            executorch = times[times["runtime"] == "executorch"].set_index("input")["median_ms"]
            onnx = times[times["runtime"] == "onnxruntime"].set_index("input")["median_ms"]
            eager = times[times["runtime"] == "eager"].set_index("input")["median_ms"]
            source = parent if precision == "fp32" else record
            label = _label(parent) + (" int8" if precision == "int8" else "")
            runtime = [r for r in record["details"]["runtimes"] if r["runtime"] == "executorch"][0]
            doubled = look_path(pd.Series(parent | {"run_dir": str(resolve(parent_dir))}), "2B") \
                if precision == "fp32" and parent["kind"] != "base" else None
            rows.append({
                "label": label, "route": record["details"]["route"], "category": _category(parent, precision),
                "precision": precision, "backbone": parent.get("backbone"),
                "scores": str(resolve(parent_dir if precision == "fp32" else run_dir)),
                # the base does not move with the budget: its model (and its int8 version) is the same at B and 2B
                "scores_2B": str(resolve(parent_dir if precision == "fp32" else run_dir) / "scores.npz")
                if parent["kind"] == "base" else (str(doubled) if doubled is not None and doubled.is_file() else None),
                "eer": source["metrics"]["eer"], "eer_ci_low": source["metrics"].get("eer ci_low"),
                "eer_ci_high": source["metrics"].get("eer ci_high"),
                "validation_eer": source["metrics"].get("validation_eer"),
                "still_improving": parent.get("still_improving") if parent["kind"] != "base" else None,
                "params": record["model"]["params"], "mmacs": record["model"]["macs"] / 1e6,
                "executorch_ms": executorch.get(study_input, np.nan),
                "executorch_224_ms": executorch.get("224x224", np.nan),
                "onnxruntime_ms": onnx.get(study_input, np.nan),
                "eager_ms": eager.get(study_input, np.nan) if precision == "fp32" else np.nan,
                "pte_mb": record["model"][f"{precision}_pte_bytes"] / 1e6,
                "onnx_mb": record["model"][f"{precision}_onnx_bytes"] / 1e6,
                "sparse_int8_mb": (record["model"].get("sparse_int8_bytes") or np.nan) / 1e6
                if precision == "int8" else np.nan,
                "min_cosine": runtime["min_cosine"] if precision == "int8" else np.nan,
                "int8_vs_fp32": runtime["difference"] if precision == "int8" else np.nan,
            })
    return pd.DataFrame(rows).drop_duplicates("scores").reset_index(drop=True)


def with_base_differences(models: pd.DataFrame, replicates: int, seed: int = 0) -> pd.DataFrame:
    """Add each model's paired EER difference to the fp32 base (same trials), its interval and Holm p."""
    base = models[models["category"] == "base"]
    if len(base) != 1:
        raise ValueError(f"the phone table needs exactly one fp32 base row (found {len(base)}): is the int8 "
                         "route in quantization.routes?")
    reference = load_trial_scores(base["scores"].iloc[0])
    rows = []
    for _, model in models.iterrows():
        paired = compare_scores(load_trial_scores(model["scores"]), reference, "eer", replicates, seed,
                                names=(model["label"], "the base"))
        rows.append({"vs_base": paired.difference, "vs_base_low": paired.ci_low, "vs_base_high": paired.ci_high,
                     "p": paired.p_value})
    out = pd.concat([models, pd.DataFrame(rows, index=models.index)], axis=1)
    others = out["category"] != "base"
    out.loc[others, "p_holm"] = holm(out.loc[others, "p"].to_numpy())
    base_row = out[~others].iloc[0]
    out["speedup"] = base_row["executorch_ms"] / out["executorch_ms"]
    out["speedup_224"] = base_row["executorch_224_ms"] / out["executorch_224_ms"]
    out["size_ratio"] = base_row["pte_mb"] / out["pte_mb"]
    return out


def best_under_budgets(models: pd.DataFrame) -> pd.DataFrame:
    """Per budget (a fraction of the fp32 base's ExecuTorch latency or ``.pte`` size), the model with the lowest
    *validation* EER (its test EER and paired difference to the base are reported, never used to choose)."""
    rows = []
    for axis, fraction in BUDGETS:
        ratio = models["speedup"] if axis == "latency" else models["size_ratio"]
        fits = models[ratio >= 1 / fraction - 1e-9]
        budget = f"{axis} <= 1/{round(1 / fraction)} of the base"
        if fits.empty:
            rows.append({"budget": budget, "label": "no model fits"})
            continue
        best = fits.sort_values("validation_eer", kind="stable").iloc[0]
        rows.append({"budget": budget, "models that fit": len(fits)} | best[[
            "label", "category", "validation_eer", "eer", "vs_base", "vs_base_low", "vs_base_high", "p_holm",
            "speedup", "size_ratio", "still_improving"]].to_dict())
    return pd.DataFrame(rows)


def category_verdict(models: pd.DataFrame, budget_speedup: float, replicates: int, seed: int = 0) -> dict:
    """Which category gives the lowest EER at ``budget_speedup``x the base's speed, by the study's rules.

    Each category's model and the winner are chosen on *validation* EER; the winner is then compared
    with every other category's model on the test trials at B and, where both models have one, at
    2B (one subject draw for both looks). The answer stands when every comparison is below zero at
    raw p < alpha at both looks (intersection-union test); a comparison without a look at 2B (the int8
    version of a compressed model is built from its model at B only) is not settled. The base and its int8
    version are the same models at both looks.
    """
    fits = models[(models["speedup"] >= budget_speedup) & (models["category"] != "base")]
    if fits.empty:
        return {"verdict": "no model", "text": f"no model is {budget_speedup:g}x faster than the base"}
    best_per = fits.sort_values("validation_eer", kind="stable").groupby("category", sort=False).head(1)
    winner = best_per.iloc[0]
    rows = []
    for _, other in best_per.iloc[1:].iterrows():
        looks = {"B": (load_trial_scores(winner["scores"]), load_trial_scores(other["scores"]))}
        if isinstance(winner["scores_2B"], str) and isinstance(other["scores_2B"], str):
            looks["2B"] = (load_trial_scores(winner["scores_2B"]), load_trial_scores(other["scores_2B"]))
        result = paired_looks(looks, replicates, seed)
        row = {"against": other["label"], "category": other["category"]}
        for look in ("B", "2B"):
            d = result.differences.get(look)
            row |= {f"{look} difference": d.difference if d else np.nan, f"{look} low": d.ci_low if d else np.nan,
                    f"{look} high": d.ci_high if d else np.nan, f"{look} p": d.p_value if d else np.nan}
        rows.append(row)
    columns = ["against", "category"] + [f"{look} {f}" for look in ("B", "2B") for f in ("difference", "low", "high",
                                                                                          "p")]
    table = pd.DataFrame(rows, columns=columns)
    reasons = []
    if table.empty:
        reasons.append("only one category fits the budget")
    for _, row in table.iterrows():
        for look in ("B", "2B"):
            if not np.isfinite(row[f"{look} p"]):
                reasons.append(f"no look at {look} against {row['against']}")
            elif not (row[f"{look} p"] < ALPHA and row[f"{look} high"] < 0):
                reasons.append(f"not lower than {row['against']} at {look} (p {row[f'{look} p']:.3g})")
    verdict = "inconclusive" if reasons else winner["category"]
    text = (f"Among models at least {budget_speedup:g}x faster than the base in ExecuTorch, {winner['label']} "
            f"({winner['category']}) has the lowest validation EER ({100 * winner['validation_eer']:.2f}%; test "
            f"{100 * winner['eer']:.2f}%). ")
    text += ("The answer stands: every other category's model is worse on the test trials at B and 2B." if not reasons
             else "Verdict: inconclusive (" + "; ".join(reasons) + ").")
    return {"verdict": verdict, "text": text, "winner": winner["label"], "table": table}


def target_checks(models: pd.DataFrame) -> pd.DataFrame:
    """The issue's targets, measured: int8 ResNet50 speed, size and EER; the best combined route's speed and EER."""
    base_int8 = models[models["category"] == "quantization"]
    fp32 = models[models["category"] == "base"]
    rows = []
    if len(base_int8) and len(fp32):
        q, f = base_int8.iloc[0], fp32.iloc[0]
        speedup = f["executorch_224_ms"] / q["executorch_224_ms"]
        rows += [
            {"target": "int8 base >= 2.5x faster than its fp32 .pte at 224x224",
             "measured": "224x224 not timed (latency.input_sizes)" if np.isnan(speedup) else f"{speedup:.2f}x",
             "met": None if np.isnan(speedup) else bool(speedup >= TARGETS["int8_speedup_224"])},
            {"target": "int8 base .pte >= 3.9x smaller", "measured": f"{f['pte_mb'] / q['pte_mb']:.2f}x",
             "met": bool(f["pte_mb"] / q["pte_mb"] >= TARGETS["int8_size_ratio"])},
            {"target": "int8 base EER within +0.5 point of fp32 (paired interval)",
             "measured": f"{100 * q['vs_base']:+.2f} points {interval_text(q['vs_base_low'], q['vs_base_high'])}",
             "met": bool(100 * q["vs_base_high"] <= TARGETS["int8_eer_points"])},
        ]
    combined = models[(models["category"] == "combination") & (models["speedup"] >= TARGETS["route_speedup"])]
    if len(combined):
        best = combined.sort_values("eer").iloc[0]
        measured = (f"{best['label']}: {best['speedup']:.1f}x, {100 * best['vs_base']:+.2f} points "
                    f"{interval_text(best['vs_base_low'], best['vs_base_high'])}")
        met = bool(100 * best["vs_base"] <= TARGETS["route_eer_points"])
    else:
        measured, met = "no combined route is 10x faster than the base", False
    rows.append({"target": "a combined route >= 10x faster than the fp32 base (study input) at <= +1 EER point",
                 "measured": measured, "met": met})
    return pd.DataFrame(rows)


VERDICT_SPEEDUP = TARGETS["route_speedup"]  # the phone question's budget: this many times the base's speed


def study_models(records: pd.DataFrame, latency: pd.DataFrame, replicates: int) -> tuple[pd.DataFrame, str, int]:
    """``(models, study input, threads)``: every deployable model of the quantization runs in ``records``, timed at
    the study input of the latency table, with its paired EER difference to the base."""
    if latency.empty:
        raise ValueError("the phone chapter needs the latency run's latency.csv (latency_dir)")
    quantized = records.loc[records["kind"] == "quantize", "run_dir"].tolist()
    study_input = latency.loc[latency["scope"] == "all models", "input"].iloc[0]
    models = with_base_differences(route_models(quantized, latency, study_input), replicates)
    return models, study_input, int(latency["threads"].iloc[0])


def models_table(models: pd.DataFrame) -> pd.DataFrame:
    """The deployable models as the chapter shows them: EER and its paired difference to the base with the
    interval in one cell, latency, speed-up and sizes with their units."""
    from .display import interval_cell, p_value_text

    return pd.DataFrame({
        "model": models["label"], "category": models["category"], "precision": models["precision"],
        "test EER %": 100 * models["eer"],
        "vs base, points [95% CI]": [interval_cell(d, lo, hi, signed=True) for d, lo, hi in
                                     zip(models["vs_base"], models["vs_base_low"], models["vs_base_high"])],
        "p (Holm)": models["p_holm"].map(p_value_text), "validation EER %": 100 * models["validation_eer"],
        "params (M)": models["params"] / 1e6, "MMACs": models["mmacs"],
        "ExecuTorch ms": models["executorch_ms"], "speed-up vs base": models["speedup"],
        "ExecuTorch ms at 224x224": models["executorch_224_ms"], "speed-up at 224x224": models["speedup_224"],
        "ONNX Runtime ms": models["onnxruntime_ms"], ".pte MB": models["pte_mb"], ".onnx MB": models["onnx_mb"],
        "sparse int8 MB": models["sparse_int8_mb"], "min cosine to fp32": models["min_cosine"],
        "int8 - fp32, points": 100 * models["int8_vs_fp32"]}).reset_index(drop=True)


def budgets_table(budgets: pd.DataFrame) -> pd.DataFrame:
    """:func:`best_under_budgets` as the chapter shows it (EERs in percent, the difference with its interval)."""
    from .display import interval_cell, p_value_text

    fitted = budgets.reindex(columns=["budget", "models that fit", "label", "category", "validation_eer", "eer",
                                      "vs_base", "vs_base_low", "vs_base_high", "p_holm", "speedup", "size_ratio",
                                      "still_improving"])
    return pd.DataFrame({
        "budget": fitted["budget"], "models that fit": fitted["models that fit"], "chosen model": fitted["label"],
        "category": fitted["category"], "validation EER %": 100 * fitted["validation_eer"],
        "test EER %": 100 * fitted["eer"],
        "vs base, points [95% CI]": [interval_cell(d, lo, hi, signed=True) for d, lo, hi in
                                     zip(fitted["vs_base"], fitted["vs_base_low"], fitted["vs_base_high"])],
        "p (Holm)": fitted["p_holm"].map(p_value_text), "speed-up": fitted["speedup"],
        "size ratio": fitted["size_ratio"], "still improving": fitted["still_improving"]})


def verdict_comparisons(verdict: dict) -> pd.DataFrame:
    """The winner's paired comparisons behind :func:`category_verdict`, one interval cell per look."""
    from .display import interval_cell, p_value_text

    table = verdict.get("table", pd.DataFrame())
    shown = pd.DataFrame({"against": table.get("against", []), "category": table.get("category", [])})
    for look in ("B", "2B"):
        if len(table):
            shown[f"at {look}: winner - other, points [95% CI]"] = [
                interval_cell(d, lo, hi, signed=True) for d, lo, hi in
                zip(table[f"{look} difference"], table[f"{look} low"], table[f"{look} high"])]
            shown[f"at {look}: p"] = table[f"{look} p"].map(p_value_text)
    return shown


def measured_routes(devices: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """The on-device measurements that name a phone-kit file of these quantization runs (``<run>-...``)."""
    kit_names = tuple(f"{Path(run)}-" for run in records.loc[records["kind"] == "quantize", "run"])
    if not kit_names:
        return devices.iloc[:0]
    return devices[devices["model"].astype(str).str.startswith(kit_names)]
