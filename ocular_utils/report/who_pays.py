"""Who pays for compression: each compressed model's EER by capture condition and subject group, against its
parent and against the base, on the same test trials with one subject draw.

The models are the study's compressed models at the headline ratio (every pruning method and the channel
pruning), the paper's method at every ratio, the students, the pruned students and every int8 route. Each
is paired with its *parent* (what it was made from: the base, a student, an fp32 model for int8) and with the
*base*. A condition's change is Holm-adjusted within a model's family of conditions (one family per
model and reference); a group gap's change within the model's attributes. A model "widens the gap" only when
the paired change of the gap is above zero and its Holm-adjusted p is below 0.05.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.environment import RunSettings
from ..core.paths import resolve
from ..core.records import display_label, read_record
from ..verification.conditions import condition_masks, group_masks
from ..verification.multiplicity import max_t
from ..verification.paired import holm
from ..verification.scoring import load_trial_scores
from ..verification.subsets import SubsetDraws, subset_draws
from .display import interval_cell, p_value_text

ALPHA = 0.05
CONDITION_ORDER = ("same phone", "cross phone", "same light", "cross light", "same session", "cross session")
REFERENCES = ("base", "parent")


def _family(record: dict, upstream: dict | None) -> str:
    if record["kind"] == "quantize":
        return "int8" if upstream["kind"] == "base" else "combined (+ int8)"
    if record["kind"] == "prune" and upstream and upstream["kind"] == "distill":
        return "combined (student, pruned)"
    return record["family"]


def _label(record: dict) -> str:
    """A model's display label; a pruned student names its student, an int8 model its fp32 parent."""
    if record["kind"] == "quantize":
        parent_dir = resolve(record["params"]["parent_dir"])
        return f"{_label(read_record(parent_dir))} int8"
    if record["kind"] == "prune":
        upstream = read_record(resolve(record["params"]["base_dir"]))
        if upstream["kind"] == "distill":  # a pruned student: the route's role adds nothing here
            return f"{display_label(upstream)}, {display_label(record | {'role': 'grid'})}"
    return display_label(record)


def study_models(records: pd.DataFrame, headline: float, paper_method: str) -> pd.DataFrame:
    """The compressed models this chapter asks about (one row each: label, family, run folder, parent folder), the
    base first: pruning at the headline ratio, the paper's method at every ratio, the students (at B and at the
    base's images + B), the pruned students, every int8 route, and any parent of those (one run per model: the
    grid's seed)."""
    base_seed = records.loc[records["kind"] == "base", "seed"]
    rows = []
    for _, row in records.iterrows():
        if row["kind"] not in ("base", "prune", "distill", "quantize"):
            continue
        record = read_record(row["run_dir"])
        role = record.get("role") or "grid"
        if row["kind"] in ("prune", "distill") and (role not in ("grid", "route", "total")
                                                   or (len(base_seed) and record.get("seed") != base_seed.iloc[0])):
            continue
        wanted = not (row["kind"] == "prune" and role == "grid") or record["method"] == paper_method or np.isclose(
            float(record["requested_compression"]), headline)
        parent_key = {"prune": "base_dir", "distill": "teacher_dir", "quantize": "parent_dir"}.get(row["kind"])
        parent_dir = str(resolve(record["params"][parent_key])) if parent_key else None
        rows.append({"label": _label(record),
                     "family": _family(record, read_record(parent_dir) if parent_dir else None),
                     "kind": row["kind"], "run_dir": str(resolve(row["run_dir"])), "parent_dir": parent_dir,
                     "compression": float(record.get("achieved_compression") or 1.0), "wanted": wanted})
    models = pd.DataFrame(rows, columns=["label", "family", "kind", "run_dir", "parent_dir", "compression", "wanted"])
    parents = set(models.loc[models["wanted"], "parent_dir"].dropna())
    models = models[models["wanted"] | models["run_dir"].isin(parents)].drop(columns="wanted")
    if (models["kind"] == "base").sum() != 1:
        raise ValueError(f"the chapter needs exactly one base model among the runs (found "
                         f"{(models['kind'] == 'base').sum()})")
    models["parent"] = models["parent_dir"].map(dict(zip(models["run_dir"], models["label"])))
    return pd.concat([models[models["kind"] == "base"], models[models["kind"] != "base"]]).reset_index(drop=True)


@dataclass
class WhoPays:
    """The chapter's analysis: the models, the trial subsets (conditions, groups) and one set of subject draws."""

    models: pd.DataFrame
    conditions: list  # subset names of capture conditions
    groups: dict  # attribute -> [subset name per value]
    draws: SubsetDraws
    notes: list  # conditions not shown, and why

    @property
    def base(self) -> str:
        """The base model's label."""
        return self.models["label"].iloc[0]

    @property
    def compressed(self) -> pd.DataFrame:
        """The models other than the base."""
        return self.models.iloc[1:]

    def condition_table(self, level: float = 0.95) -> pd.DataFrame:
        """Every model's EER (and TAR) per capture condition with its interval and the subset's counts."""
        rows = []
        for label in self.models["label"]:
            for subset in self.conditions:
                eer, tar = (self.draws.value(label, subset, metric, level) for metric in ("eer", "tar"))
                genuine, impostor, subjects = self.draws.trials[subset]
                rows.append({"model": label, "condition": subset, "eer": eer.difference if eer else np.nan,
                             "eer ci_low": eer.ci_low if eer else np.nan, "eer ci_high": eer.ci_high if eer else np.nan,
                             "tar": tar.difference if tar else np.nan, "genuine trials": genuine,
                             "impostor trials": impostor, "subjects": subjects})
        return pd.DataFrame(rows)

    def _reference(self, model: pd.Series, against: str) -> str | None:
        if against not in REFERENCES:
            raise ValueError(f"unknown reference {against!r}; expected one of {REFERENCES}")
        parent = model["parent"]
        return self.base if against == "base" else (parent if isinstance(parent, str) else None)

    def condition_changes(self, against: str = "base", level: float = 0.95) -> pd.DataFrame:
        """Per compressed model and condition, the paired EER change against the base or the parent, Holm within
        the model's family of conditions; ``paid`` marks a change above zero at Holm-adjusted p < 0.05."""
        frames = []
        for _, model in self.compressed.iterrows():
            reference = self._reference(model, against)
            if reference is None or (against == "parent" and reference == self.base):
                continue  # made from the base: the change against its parent is the change against the base
            rows = [self._change_row(model, reference, subset, level) for subset in self.conditions]
            frame = pd.DataFrame(rows)
            tested = frame["p"].notna()
            frame["p_holm"] = np.nan
            if tested.any():
                frame.loc[tested, "p_holm"] = holm(frame.loc[tested, "p"].to_numpy())
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(out):
            out["paid"] = [None if np.isnan(c) else bool(c > 0 and p < ALPHA)
                           for c, p in zip(out["change"], out["p_holm"])]
        return out

    def _change_row(self, model: pd.Series, reference: str, subset: str, level: float) -> dict:
        change = self.draws.change(model["label"], reference, subset, "eer", level)
        return {"model": model["label"], "family": model["family"], "against": reference, "condition": subset,
                "change": change.difference if change else np.nan, "ci_low": change.ci_low if change else np.nan,
                "ci_high": change.ci_high if change else np.nan, "p": change.p_value if change else np.nan,
                "note": "" if change else "too few subjects"}

    def phone_ratios(self, level: float = 0.95) -> pd.DataFrame:
        """Cross-phone over same-phone EER of every model, with its interval (one row per model)."""
        rows = []
        for label in self.models["label"]:
            ratio = self.draws.ratio(label, "cross phone", "same phone", level) \
                if "cross phone" in self.conditions else None
            rows.append({"model": label, "ratio": ratio.difference if ratio else np.nan,
                         "ci_low": ratio.ci_low if ratio else np.nan, "ci_high": ratio.ci_high if ratio else np.nan})
        return pd.DataFrame(rows)

    def group_table(self, level: float = 0.95) -> pd.DataFrame:
        """Every model's EER per subject group (within-group trials) with its interval; small groups say so."""
        rows = []
        for attribute, subsets in self.groups.items():
            for subset in subsets:
                genuine, impostor, subjects = self.draws.trials[subset]
                for label in self.models["label"]:
                    eer = self.draws.value(label, subset, "eer", level)
                    rows.append({"attribute": attribute, "group": subset.split(" = ", 1)[1], "model": label,
                                 "eer": eer.difference if eer else np.nan, "eer ci_low": eer.ci_low if eer else np.nan,
                                 "eer ci_high": eer.ci_high if eer else np.nan, "subjects": subjects,
                                 "note": "" if eer else "too few subjects"})
        return pd.DataFrame(rows)

    def gaps(self, level: float = 0.95) -> pd.DataFrame:
        """Every model's EER gap between the groups of each attribute (max - min and max / min) with intervals."""
        rows = []
        for attribute, subsets in self.groups.items():
            left_out = [s.split(" = ", 1)[1] for s in subsets if not self.draws.usable(s)]
            for label in self.models["label"]:
                gap, ratio = self.draws.gap(label, subsets, False, level), self.draws.gap(label, subsets, True, level)
                rows.append({"attribute": attribute, "model": label, "gap": gap.difference if gap else np.nan,
                             "ci_low": gap.ci_low if gap else np.nan, "ci_high": gap.ci_high if gap else np.nan,
                             "ratio": ratio.difference if ratio else np.nan,
                             "note": ("too few subjects" if gap is None else "")
                             + (f"left out (too few subjects): {', '.join(left_out)}" if left_out and gap else "")})
        return pd.DataFrame(rows)

    def gap_changes(self, against: str = "base", level: float = 0.95) -> pd.DataFrame:
        """Per compressed model and attribute, the paired change of the EER gap against the base or the parent,
        Holm within the model's attributes; ``widens`` when above zero at Holm-adjusted p < 0.05."""
        rows = []
        for _, model in self.compressed.iterrows():
            reference = self._reference(model, against)
            if reference is None or (against == "parent" and reference == self.base):
                continue
            family = []
            for attribute, subsets in self.groups.items():
                change = self.draws.gap_change(model["label"], reference, subsets, level)
                family.append({"model": model["label"], "family": model["family"], "against": reference,
                               "attribute": attribute, "change": change.difference if change else np.nan,
                               "ci_low": change.ci_low if change else np.nan,
                               "ci_high": change.ci_high if change else np.nan,
                               "p": change.p_value if change else np.nan, "note": "" if change else "too few subjects"})
            p = np.array([r["p"] for r in family], float)
            adjusted = np.full(len(p), np.nan)
            if np.isfinite(p).any():
                adjusted[np.isfinite(p)] = holm(p[np.isfinite(p)])
            rows += [r | {"p_holm": a, "widens": None if np.isnan(r["change"]) else bool(r["change"] > 0 and a < ALPHA)}
                     for r, a in zip(family, adjusted)]
        return pd.DataFrame(rows)

    def largest_change(self, what: str = "condition", against: str = "base", level: float = 0.95) -> pd.Series | None:
        """The paired change with the largest absolute estimate among every compressed model's conditions
        (``what="condition"``) or group gaps (``"gap"``) against ``against``, with a family-wise p
        (``p_family``) and a simultaneous interval (``band_low``, ``band_high``) over all ``tests`` tested
        changes it was picked from: max-T on the same draws (:func:`..verification.multiplicity.max_t`)."""
        if what not in ("condition", "gap"):
            raise ValueError(f"unknown kind of change {what!r}; expected 'condition' or 'gap'")
        changes = self.condition_changes(against, level) if what == "condition" else self.gap_changes(against, level)
        tested = changes[changes["p"].notna()].reset_index(drop=True) if len(changes) else changes
        if tested.empty:
            return None
        drawn = [self.draws.change_draws(row["model"], row["against"], row["condition"]) if what == "condition"
                 else self.draws.gap_change_draws(row["model"], row["against"], self.groups[row["attribute"]])
                 for _, row in tested.iterrows()]
        family = max_t([observed for observed, _ in drawn], np.column_stack([draws for _, draws in drawn]), level)
        tested = tested.assign(p_family=family.p_values, band_low=family.ci_low, band_high=family.ci_high,
                               tests=len(tested), replicates=family.replicates)
        return tested.loc[tested["change"].abs().idxmax()]


def subject_groups(data: dict) -> tuple[pd.DataFrame, list[str]]:
    """The subject attributes of the data a profile names (``data``: its data section), with the loader's notes
    about them (nothing is decoded)."""
    from ..data.config import DataConfig
    from ..data.prepare import index_data

    dataset = index_data(DataConfig.from_dict(data, "data"))
    return dataset.attributes, [note for note in dataset.notes if "attribute" in note or "protocol column" in note]


def trial_counts(analysis: "WhoPays") -> pd.DataFrame:
    """Trials and test subjects of every condition and group subset the chapter reads."""
    rows = [{"subset": subset, "kind": "condition" if subset in analysis.conditions else "group",
             "genuine trials": genuine, "impostor trials": impostor, "test subjects": subjects,
             "read": "yes" if analysis.draws.usable(subset) else "too few subjects"}
            for subset, (genuine, impostor, subjects) in analysis.draws.trials.items()]
    return pd.DataFrame(rows)


def analyse(models: pd.DataFrame, attributes: pd.DataFrame, replicates: int, seed: int = 0) -> WhoPays:
    """Load every model's test scores and read them all under one subject draw: the condition subsets of the score
    files, and the within-group subsets of every attribute (``attributes``: subject -> one column per attribute)."""
    files = {row["label"]: load_trial_scores(row["run_dir"]) for _, row in models.iterrows()}
    first = next(iter(files.values()))
    masks, notes = {}, []
    for name, mask in condition_masks(first).items():
        if not mask.any():
            notes.append(f"no trial is {name} in this protocol")
        elif mask.all():
            notes.append(f"every trial is {name}: the same as the overall EER, not shown as a condition")
        else:
            masks[name] = mask
    conditions = [name for name in CONDITION_ORDER if name in masks] + sorted(
        name for name in masks if name not in CONDITION_ORDER)
    groups = {}
    for attribute in attributes.columns:
        values = attributes[attribute].dropna()
        if values.nunique() < 2:
            continue
        per_value = group_masks(first, values)
        groups[attribute] = [f"{attribute} = {value}" for value in per_value]
        masks |= {f"{attribute} = {value}": mask for value, mask in per_value.items()}
    return WhoPays(models, conditions, groups, subset_draws(files, masks, replicates, seed), notes)


def heatmap_frame(changes: pd.DataFrame) -> pd.DataFrame:
    """Condition changes (points) as a model x condition frame for the heatmap, rows in the models' order."""
    table = changes.assign(points=100 * changes["change"]).pivot(index="model", columns="condition", values="points")
    return table.loc[list(dict.fromkeys(changes["model"])), list(dict.fromkeys(changes["condition"]))]


def changes_display(changes: pd.DataFrame) -> pd.DataFrame:
    """Condition or gap changes as the chapter shows them: change and interval in one cell, Holm p as text."""
    key = "condition" if "condition" in changes else "attribute"
    flag = "paid" if "paid" in changes else "widens"
    return pd.DataFrame({
        "model": changes["model"], "family": changes["family"], key: changes[key],
        "change, points [95% CI]": [interval_cell(c, lo, hi, signed=True) for c, lo, hi in
                                    zip(changes["change"], changes["ci_low"], changes["ci_high"])],
        "Holm p": [p_value_text(p) for p in changes["p_holm"]],
        {"paid": "worse, Holm p < 0.05", "widens": "widens the gap"}[flag]: changes[flag],
        "note": changes["note"]})


def condition_display(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """One model's EER and TAR per condition as the chapter shows them (interval in the EER cell)."""
    rows = table[table["model"] == model]
    return pd.DataFrame({"condition": rows["condition"],
                         "EER % [95% CI]": [interval_cell(v, lo, hi) for v, lo, hi in
                                            zip(rows["eer"], rows["eer ci_low"], rows["eer ci_high"])],
                         "TAR at FAR 1% (%)": rows["tar"], "genuine trials": rows["genuine trials"],
                         "impostor trials": rows["impostor trials"], "test subjects": rows["subjects"]})


def ratios_display(ratios: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Cross-phone / same-phone EER ratio per model with its interval."""
    return pd.DataFrame({"model": ratios["model"], "family": models["family"].to_numpy(),
                         "cross / same phone EER [95% CI]": [
                             interval_cell(v, lo, hi, scale=1.0) for v, lo, hi in
                             zip(ratios["ratio"], ratios["ci_low"], ratios["ci_high"])]})


def groups_display(groups: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Per attribute and model: each group's EER (interval) and the gap max - min (interval) and max / min."""
    cells = groups.assign(cell=[interval_cell(v, lo, hi) if not note else note for v, lo, hi, note in
                                zip(groups["eer"], groups["eer ci_low"], groups["eer ci_high"], groups["note"])])
    wide = cells.pivot_table(index=["attribute", "model"], columns="group", values="cell", aggfunc="first",
                             sort=False).reset_index()
    wide.columns.name = None
    shown = gaps.assign(**{"gap, points [95% CI]": [
        interval_cell(v, lo, hi) if not pd.isna(v) else "too few subjects"
        for v, lo, hi in zip(gaps["gap"], gaps["ci_low"], gaps["ci_high"])], "max / min": gaps["ratio"]})
    return wide.merge(shown[["attribute", "model", "gap, points [95% CI]", "max / min", "note"]],
                      on=["attribute", "model"], how="left")


def calibration_table(datasets: int = 60, replicates: int = RunSettings.replicates, subjects: int = 40, seed: int = 0
                      ) -> pd.DataFrame:
    """The false-positive rate of the gap-change test and of the Holm family of group changes (two models of
    equal gaps), and their power when one model's group B is harder (simulated, :mod:`..verification.calibration`)."""
    from ..verification.calibration import Design, gap_rejection_rate

    rows = []
    for group_effect, extra, what in ((0.4, 0.0, "equal gaps, group B harder in both"),
                                      (0.0, 0.0, "no gap in either model"),
                                      (0.4, 0.4, "model a's group B harder still (power)")):
        result = gap_rejection_rate(Design(subjects=subjects, effect_side="both"), datasets, replicates, ALPHA,
                                    seed, group_effect, extra)
        rows.append({"setting": what, "simulated data sets": datasets,
                     "gap change rejects": result["gap_rate"], "Holm family of group changes rejects":
                     result["family_rate"]})
    return pd.DataFrame(rows)


def family_calibration_table(datasets: int = 60, replicates: int = RunSettings.replicates, subjects: int = 40,
                             seed: int = 0) -> pd.DataFrame:
    """The family-wise error rate of the test behind the findings' largest change (max-T over a family read from
    one set of draws) next to Holm on bootstrap p-values, with six null models on three subsets, and the power
    of both when one model is 4 points better (simulated, :func:`..verification.calibration.family_rejection_rate`)."""
    from ..verification.calibration import Design, family_rejection_rate

    rows = []
    for shift, what in ((0.0, "every model like the base (family-wise error)"),
                        (4.0, "one model 4 points better (power)")):
        result = family_rejection_rate(Design(subjects=subjects, effect_side="both"), datasets, 6, replicates, ALPHA,
                                       seed, shift)
        rows.append({"setting": what, "simulated data sets": datasets, "draws per data set": replicates,
                     "tests in the family": result["tests"], "max-T rejects any": result["max_t_rate"],
                     "Holm rejects any": result["holm_rate"],
                     "Holm's smallest possible p": min(1.0, result["tests"] * 2 / (replicates + 1))})
    return pd.DataFrame(rows)
