"""Every figure of the book (matplotlib + seaborn). Each function returns its figure.

Importing this module changes no global state; notebooks call :func:`apply_style` once.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image
from scipy.stats import norm

from ..training.along import along_the_way
from ..verification.metrics import det, roc

DET_TICKS = [0.001, 0.01, 0.05, 0.2, 0.5]


def apply_style() -> None:
    """The book's plotting style (seaborn's whitegrid theme); changes matplotlib's global settings."""
    sns.set_theme(context="notebook", style="whitegrid")


def synthetic_tag(ax, synthetic: bool) -> None:
    """Stamp 'SYNTHETIC DATA' on an axis when the figure comes from generated images."""
    if synthetic:
        ax.text(0.99, 0.01, "SYNTHETIC DATA", transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                color="firebrick", alpha=0.8)


def sample_grid(frame: pd.DataFrame, rows: str = "phone", cols: str = "light", seed: int = 0, synthetic: bool = False):
    """One sample image per (rows x cols) condition, as stored on disk."""
    frame = frame.copy()
    if (frame[rows] == "").all():
        frame[rows] = "all"
    if (frame[cols] == "").all():
        frame[cols] = "session " + frame["session"].astype(str)
    row_values, col_values = sorted(frame[rows].unique()), sorted(frame[cols].unique())
    fig, axes = plt.subplots(len(row_values), len(col_values), figsize=(2.6 * len(col_values), 1.9 * len(row_values)),
                             squeeze=False)
    rng = np.random.default_rng(seed)
    for i, r in enumerate(row_values):
        for j, c in enumerate(col_values):
            ax = axes[i, j]
            pool = frame[(frame[rows] == r) & (frame[cols] == c)]
            ax.set_xticks([]), ax.set_yticks([])
            if len(pool):
                row = pool.iloc[int(rng.integers(len(pool)))]
                with Image.open(row["path"]) as image:
                    ax.imshow(image.convert("RGB"))
                ax.set_xlabel(f"{row['subject']} {row['eye']} s{row['session']}", fontsize=8)
            if i == 0:
                ax.set_title(str(c))
            if j == 0:
                ax.set_ylabel(str(r))
    synthetic_tag(axes[-1, -1], synthetic)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, synthetic: bool = False):
    """Training loss, training accuracy and validation EER per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(history["epoch"], history["train_loss"], marker="o")
    axes[0].set(xlabel="epoch", ylabel="training loss")
    axes[1].plot(history["epoch"], history["train_accuracy"], marker="o")
    axes[1].set(xlabel="epoch", ylabel="training accuracy")
    if "points" in history:  # a run to a budget: a finished model at each point
        points = along_the_way(history)
        axes[2].plot(points["budget_images"], 100 * points["val_eer"].astype(float), marker="o", color="C3")
        kept = points[np.isclose(points["point"].astype(float), 1.0)]
        if len(kept):
            axes[2].axvline(kept["budget_images"].iloc[0], ls="--", color="grey", label="the model kept (its budget)")
            axes[2].legend()
        axes[2].set_title("finished model at each point (after its decay)", fontsize=9)
        axes[2].set_xlabel("training images")
    elif "val_eer" in history:
        validated = history.dropna(subset=["val_eer"])
        axes[2].plot(validated["epoch"], 100 * validated["val_eer"], marker="o", color="C3")
        best = validated.loc[validated["val_eer"].idxmin()]
        axes[2].axvline(best["epoch"], ls="--", color="grey", label=f"selected epoch {int(best['epoch'])}")
        axes[2].legend()
    axes[2].set(ylabel="validation EER (%)")
    if "points" not in history:
        axes[2].set_xlabel("epoch")
    synthetic_tag(axes[2], synthetic)
    fig.tight_layout()
    return fig


def score_distributions(genuine, impostor, threshold: float | None = None, title: str = "", synthetic: bool = False):
    """Histograms of genuine and impostor cosine similarities, with the EER threshold."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.linspace(min(np.min(genuine), np.min(impostor)), max(np.max(genuine), np.max(impostor)), 60)
    ax.hist(impostor, bins=bins, density=True, alpha=0.55, label=f"impostor ({len(impostor):,})")
    ax.hist(genuine, bins=bins, density=True, alpha=0.55, label=f"genuine ({len(genuine):,})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label="EER threshold")
    ax.set(xlabel="cosine similarity", ylabel="density", title=title)
    ax.legend()
    synthetic_tag(ax, synthetic)
    fig.tight_layout()
    return fig


def roc_det(curves: dict, synthetic: bool = False):
    """ROC (log FAR axis) and DET (normal-deviate axes) of several models: ``{name: (genuine, impostor)}``."""
    fig, (ax_roc, ax_det) = plt.subplots(1, 2, figsize=(12, 4.4))
    for name, (genuine, impostor) in curves.items():
        r = roc(genuine, impostor)
        keep = r["far"] > 0
        ax_roc.plot(r["far"][keep], r["tar"][keep], label=name)
        d = det(genuine, impostor)
        eps = 1e-6
        ax_det.plot(norm.ppf(np.clip(d["far"], eps, 1 - eps)), norm.ppf(np.clip(d["frr"], eps, 1 - eps)), label=name)
    ax_roc.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="ROC")
    ticks = norm.ppf(DET_TICKS)
    labels = [f"{t:g}" for t in DET_TICKS]
    ax_det.set_xticks(ticks, labels)
    ax_det.set_yticks(ticks, labels)
    ax_det.plot(ticks, ticks, color="grey", lw=0.8, ls=":")
    ax_det.set(xlim=(ticks[0], ticks[-1]), ylim=(ticks[0], ticks[-1]), xlabel="false accept rate",
               ylabel="false reject rate", title="DET (normal-deviate axes)")
    ax_roc.legend(fontsize=8)
    ax_det.legend(fontsize=8)
    synthetic_tag(ax_det, synthetic)
    fig.tight_layout()
    return fig


def eer_vs_compression(table: pd.DataFrame, base_eer: float | None = None, column: str = "eer", hue: str = "method",
                       synthetic: bool = False, ax=None):
    """EER (%) against achieved compression, one line per method, bootstrap bands where present."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (method, group) in enumerate(table.sort_values("compression").groupby(hue, sort=True)):
        colour = f"C{i}"
        ax.plot(group["compression"], 100 * group[column], marker="o", label=method, color=colour)
        low, high = f"{column} ci_low", f"{column} ci_high"
        if low in group and group[low].notna().all():
            ax.fill_between(group["compression"], 100 * group[low], 100 * group[high], alpha=0.15, color=colour)
    if base_eer is not None:
        ax.axhline(100 * base_eer, color="k", ls="--", lw=1, label="unpruned base")
    compression_axis(ax)
    ax.set(ylabel="EER (%)")
    ax.legend(fontsize=8)
    synthetic_tag(ax, synthetic)
    if own:
        fig.tight_layout()
        return fig
    return ax.figure


def pareto_front(points: pd.DataFrame, x: str, y: str = "eer") -> pd.DataFrame:
    """The points not dominated in (lower ``x``, lower ``y``), sorted by ``x``."""
    ordered = points.sort_values([x, y])
    best = np.inf
    keep = []
    for index, row in ordered.iterrows():
        if row[y] < best:
            keep.append(index)
            best = row[y]
    return ordered.loc[keep]


def tradeoff(points: pd.DataFrame, x: str, xlabel: str, y: str = "eer", hue: str = "family", log_x: bool = True,
             synthetic: bool = False):
    """EER against a cost (latency, size, MACs) for every model, with the Pareto front."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sns.scatterplot(data=points, x=x, y=points[y] * 100, hue=hue, style=hue, s=70, ax=ax)
    front = pareto_front(points, x, y)
    ax.step(front[x], front[y] * 100, where="post", color="k", lw=1, ls="--", label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(row["label"], (row[x], row[y] * 100), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if log_x:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    ax.set(xlabel=xlabel, ylabel="EER (%)")
    ax.legend(fontsize=8)
    synthetic_tag(ax, synthetic)
    fig.tight_layout()
    return fig


def plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers (2, 5, 10, 20) instead of powers of ten."""
    axis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(mticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(mticker.NullFormatter())


def compression_axis(ax) -> None:
    """A log2 x axis labelled 2, 4, 8, ... for compression ratios."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel("compression (parameters / nonzero parameters)")


def pruning_grid(unstructured: pd.DataFrame, channel: pd.DataFrame, base_eer: float, synthetic: bool = False):
    """EER against achieved compression: unstructured methods (left) and channel pruning (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), sharey=True)
    eer_vs_compression(unstructured, base_eer, synthetic=synthetic, ax=axes[0])
    axes[0].set_title("unstructured (masks)")
    if len(channel):
        eer_vs_compression(channel, base_eer, synthetic=synthetic, ax=axes[1])
    axes[1].set_title("channel pruning (smaller dense network)")
    fig.tight_layout()
    return fig


def finetune_recovery(grid: pd.DataFrame, base_eer: float, synthetic: bool = False):
    """EER right after pruning (hollow, dotted) and after fine-tuning (filled), per method and ratio."""
    fig, ax = plt.subplots(figsize=(11, 4.4))
    for i, (method, group) in enumerate(grid.groupby("method")):
        ax.plot(group["compression"], 100 * group["eer_before_finetune"], ls=":", marker="o", mfc="none",
                color=f"C{i}")
        ax.plot(group["compression"], 100 * group["eer"], marker="o", color=f"C{i}", label=method)
    ax.axhline(100 * base_eer, color="k", ls="--", lw=1, label="unpruned base")
    compression_axis(ax)
    ax.set(yscale="log", ylabel="EER (%, log scale)")
    plain_log_ticks(ax.yaxis)
    ax.legend(fontsize=8, ncol=2)
    synthetic_tag(ax, synthetic)
    fig.tight_layout()
    return fig


def student_bars(students: pd.DataFrame, teacher_eer: float, teacher_label: str, synthetic: bool = False):
    """EER (%) per student and loss with 95% interval whiskers; the teacher as a dashed line."""
    fig, ax = plt.subplots(figsize=(10, 4.4))
    order = sorted(students["loss"].unique(), key=lambda loss: (loss != "none", loss))
    names = sorted(students["student"].unique())
    width = 0.8 / len(order)
    for j, loss in enumerate(order):
        part = students[students["loss"] == loss].set_index("student").reindex(names)
        x = [i + (j - (len(order) - 1) / 2) * width for i in range(len(names))]
        errors = [100 * (part["eer"] - part["eer ci_low"]), 100 * (part["eer ci_high"] - part["eer"])]
        ax.bar(x, 100 * part["eer"], width, yerr=errors, capsize=3,
               label="no teacher (control)" if loss == "none" else f"KD: {loss}")
    ax.axhline(100 * teacher_eer, color="k", ls="--", lw=1, label=f"teacher ({teacher_label})")
    ax.set_xticks(range(len(names)), names)
    ax.set(ylabel="EER (%)")
    ax.legend(fontsize=8)
    synthetic_tag(ax, synthetic)
    fig.tight_layout()
    return fig


def latency_bars(bench: pd.DataFrame, synthetic: bool = False):
    """Median latency per model and runtime, one panel per input size (log axis)."""
    sizes = list(bench["input"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        sns.barplot(data=bench[bench["input"] == size], y="label", x="median_ms", hue="runtime", ax=ax)
        ax.set(xscale="log", xlabel=f"median latency at {size} (ms, log scale)", ylabel="")
        plain_log_ticks(ax.xaxis)
        synthetic_tag(ax, synthetic)
    fig.tight_layout()
    return fig


def budget_curves(along: pd.DataFrame, base_eer: float, budget: int, synthetic: bool = False):
    """Test EER against training images for the runs evaluated along the way, one panel per group.

    ``along`` is :meth:`~ocular_utils.report.results.StudyResults.along_the_way`; the dotted line is the
    matched budget, the dashed line the base (trained on its own, larger budget).
    """
    groups = [g for g in along["group"].unique()]
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(4.4 * max(1, len(groups)), 3.6), squeeze=False,
                             sharey=True)
    for ax, group in zip(axes[0], groups):
        part = along[along["group"] == group]
        for label, curve in part.groupby("label", sort=False):
            ax.plot(curve["images"], 100 * curve["test_eer"], marker="o", label=label)
        ax.axhline(100 * base_eer, ls="--", color="black", lw=1, label="base")
        ax.axvline(budget, ls=":", color="grey", lw=1)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set(title=group, xlabel="training images after the base / from scratch")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("test EER (%)")
    synthetic_tag(axes[0, -1], synthetic)
    fig.tight_layout()
    return fig


FOREST_LOOKS = (("B/2", "lightgrey"), ("B", "C0"), ("2B", "C3"))


def forest(comparisons: pd.DataFrame, margin: float, title: str, rule: str, synthetic: bool = False):
    """One finding's comparisons: the paired EER difference a - b (points) with its 95% interval at B/2, B and 2B.

    The shaded band is +-``margin`` (the non-inferiority margin); ``title`` carries the verdict and
    ``rule`` (one line under the figure) the rule that decided it.
    """
    rows = comparisons.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.5, 0.5 + 0.45 * max(2, len(rows))))
    ax.axvspan(-margin, margin, color="gold", alpha=0.2, lw=0, label=f"+-{margin:g} points (margin)")
    ax.axvline(0, color="black", lw=0.8)
    for k, (look, color) in enumerate(FOREST_LOOKS):
        if f"{look} difference" not in rows:
            continue
        y = np.arange(len(rows)) + (k - 1) * 0.22
        d = rows[f"{look} difference"].astype(float)
        err = np.vstack([d - rows[f"{look} low"].astype(float), rows[f"{look} high"].astype(float) - d])
        ax.errorbar(d, y, xerr=err, fmt="o", color=color, ms=4, capsize=2, label=f"at {look}")
    ax.set_yticks(np.arange(len(rows)))
    ax.set_yticklabels([f"{a} - {b}" for a, b in zip(rows["a"], rows["b"])], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="paired EER difference a - b (points, 95% interval)", title=title)
    ax.legend(fontsize=7, loc="best")
    fig.text(0.01, -0.02, "Rule: " + rule, fontsize=7, wrap=True, va="top")
    synthetic_tag(ax, synthetic)
    fig.tight_layout()
    return fig


def finding_forest(comparisons: pd.DataFrame, verdict_table: pd.DataFrame, key: str, margin: float,
                   synthetic: bool = False):
    """The :func:`forest` figure of one finding (``key``), titled with its verdict (a note when it has none)."""
    rows = comparisons[comparisons["finding"] == key]
    verdict = verdict_table[verdict_table["key"] == key]
    if rows.empty or verdict.empty:
        fig, ax = plt.subplots(figsize=(8.5, 1.2))
        ax.axis("off")
        reason = verdict["reason"].iloc[0] if len(verdict) else "not tested"
        ax.text(0.5, 0.5, f"{key}: no comparison ({reason})", ha="center", va="center", fontsize=9, wrap=True)
        return fig
    title = "; ".join(f"{v['verdict']} ({v['on']})" for _, v in verdict.iterrows())
    return forest(rows, margin, title, verdict["rule"].iloc[0], synthetic)


def condition_heatmap(points: pd.DataFrame, marked: pd.DataFrame, title: str, synthetic: bool = False):
    """Paired EER change (points) per model (rows) and capture condition (columns), centred on zero; ``marked``
    (same shape, booleans) puts a * on the cells whose change holds after Holm."""
    fig, ax = plt.subplots(figsize=(2.6 + 0.62 * points.shape[1], 1.6 + 0.34 * len(points)))
    labels = points.map(lambda v: "" if pd.isna(v) else f"{v:+.1f}") + marked.reindex_like(points).fillna(False).map(
        lambda m: "*" if m else "")
    limit = float(np.nanmax(np.abs(points.to_numpy()))) if np.isfinite(points.to_numpy()).any() else 1.0
    sns.heatmap(points, annot=labels, fmt="", cmap="RdBu_r", center=0, vmin=-limit, vmax=limit, ax=ax,
                cbar_kws={"label": "EER change (points)"}, annot_kws={"fontsize": 7}, linewidths=0.5)
    ax.set(xlabel="", ylabel="", title=title)
    ax.tick_params(axis="x", labelrotation=40, labelsize=8)
    ax.tick_params(axis="y", labelsize=8)
    plt.setp(ax.get_xticklabels(), ha="right")
    if synthetic:  # below the axes: inside, the stamp would cover a cell
        fig.text(0.99, 0.01, "SYNTHETIC DATA", ha="right", va="bottom", fontsize=8, color="firebrick", alpha=0.8)
    fig.tight_layout()
    return fig
