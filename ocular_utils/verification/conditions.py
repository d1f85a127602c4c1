"""Who pays for compression: EER by capture condition and by subject group, and paired changes of both.

Every trial compares a probe image with a reference image; each image was captured under some
conditions (``phone``, ``light``, ``session``). :func:`condition_codes` keeps them per trial side as
compact integer codes (what a score file stores); :func:`condition_masks` turns them into the
trial subsets a reader asks about: same phone vs cross phone, same light vs cross light, each
lighting pair. Subject groups (an attribute per subject, e.g. a synthetic skin-tone group) give
within-group trials: genuine trials of the group's subjects and impostor trials between two of them.

Every metric here is read with the study's one subject bootstrap (:mod:`.resampling`: both subjects
of a trial resampled, one draw for all models compared), so a condition's EER interval and a paired
change between two models on the same trials mean what they mean elsewhere in the study. The gap
between groups is ``max - min`` of their EERs (and ``max / min``), as in the differential
performance measures of ISO/IEC 19795-10; a model "widens the gap" only when the paired change of
the gap excludes zero.
"""
from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np
import pandas as pd

from ..core.environment import RunSettings
from .metrics import ErrorCurve
from .paired import PairedDifference, holm, resampled_values, summarize
from .resampling import resampler_for

CONDITIONS = ("phone", "light", "session")  # capture conditions of an image, kept for both sides of a trial
UNKNOWN = -1  # code of a side whose condition the data does not record
MIN_GROUP_SUBJECTS = 2  # fewer test subjects in a group: "too few subjects", not a number


def condition_codes(images: pd.DataFrame, trials: pd.DataFrame) -> dict[str, np.ndarray]:
    """Compact capture conditions of both sides of every trial, for a score file.

    ``images`` are the test images (``trials``' ``probe`` and ``reference`` are their row positions).
    Returns ``condition_names`` (the condition columns present), ``condition_levels`` (every value as
    ``"column=value"``) and ``probe_conditions`` / ``reference_conditions`` (trials x conditions, int16
    indices into the levels; -1 where the data does not record the condition).
    """
    names = [c for c in CONDITIONS if c in images.columns]
    levels: list[str] = []
    sides = {side: np.full((len(trials), len(names)), UNKNOWN, np.int16) for side in ("probe", "reference")}
    images = images.reset_index(drop=True)
    for k, name in enumerate(names):
        values = images[name].astype(str).to_numpy()
        known = sorted({v for v in values if v not in ("", "nan", "None")})
        offset = len(levels)
        levels += [f"{name}={v}" for v in known]
        lookup = {v: offset + i for i, v in enumerate(known)}
        codes = np.array([lookup.get(v, UNKNOWN) for v in values], np.int16)
        for side in sides:
            sides[side][:, k] = codes[trials[side].to_numpy()]
    return {"condition_names": np.array(names, dtype=str), "condition_levels": np.array(levels, dtype=str),
            "probe_conditions": sides["probe"], "reference_conditions": sides["reference"]}


def _side_values(score_file: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The values (strings; "" unknown) of condition ``name`` on the probe and reference side of every trial."""
    names = list(score_file["condition_names"])
    if name not in names:
        raise KeyError(f"the score file records no {name!r} condition (it has {names})")
    levels = np.array([level.split("=", 1)[1] for level in score_file["condition_levels"]] + [""], dtype=object)
    k = names.index(name)
    return levels[score_file["probe_conditions"][:, k]], levels[score_file["reference_conditions"][:, k]]


def condition_masks(score_file: dict) -> dict[str, np.ndarray]:
    """Trial subsets by capture condition: same / cross phone, same / cross light, each lighting pair
    (``light a / b``, unordered) and same / cross session, for the conditions the file records."""
    if "condition_names" not in score_file:
        raise ValueError("this score file keeps no capture conditions (written before they were kept); rerun "
                         "the run that wrote it")
    masks = {}
    for name, label in (("phone", "phone"), ("light", "light"), ("session", "session")):
        if name not in score_file["condition_names"]:
            continue
        probe, reference = _side_values(score_file, name)
        known = (probe != "") & (reference != "")
        masks[f"same {label}"] = known & (probe == reference)
        masks[f"cross {label}"] = known & (probe != reference)
        if name == "light":
            values = sorted(set(probe[known]) | set(reference[known]))
            for a, b in combinations_with_replacement(values, 2):
                pair = known & (((probe == a) & (reference == b)) | ((probe == b) & (reference == a)))
                masks[f"light {a} / {b}"] = pair
    return masks


def group_masks(score_file: dict, groups: pd.Series) -> dict[str, np.ndarray]:
    """Within-group trials per value of a subject attribute (``groups``: subject -> value): genuine trials of the
    group's subjects and impostor trials between two of its subjects."""
    probe = pd.Series(score_file["probe_subject"]).astype(str).map(groups.rename(index=str))
    reference = pd.Series(score_file["reference_subject"]).astype(str).map(groups.rename(index=str))
    return {str(value): ((probe == value) & (reference == value)).to_numpy() for value in sorted(groups.unique())}


def masked_eer(mask: np.ndarray):
    """A metric ``(scores, genuine, weights) -> EER`` on the trials of ``mask`` (NaN without both kinds)."""
    mask = np.asarray(mask, bool)

    def metric(scores, genuine, weights):
        g, i = mask & genuine, mask & ~genuine
        if weights[g].sum() <= 0 or weights[i].sum() <= 0:
            return np.nan
        return ErrorCurve(scores[g], scores[i]).eer(weights[g], weights[i])[0]

    return metric


def gap_metric(masks: dict[str, np.ndarray], ratio: bool = False):
    """A metric: ``max - min`` (or ``max / min``) of the groups' EERs on their within-group trials."""
    metrics = [masked_eer(mask) for mask in masks.values()]

    def metric(scores, genuine, weights):
        values = np.array([m(scores, genuine, weights) for m in metrics])
        if np.isnan(values).any():
            return np.nan
        return values.max() / values.min() if ratio and values.min() > 0 else (
            np.nan if ratio else values.max() - values.min())

    return metric


def _subjects(score_file: dict, mask: np.ndarray) -> int:
    return len(set(score_file["probe_subject"][mask]) | set(score_file["reference_subject"][mask]))


def _resampled(score_sets: list, resampler, metric):
    """``resampled_values``, or ``None`` when no draw kept both kinds of trial of the subset (too few subjects)."""
    try:
        return resampled_values(score_sets, resampler, metric)
    except ValueError:
        return None


def subset_metrics(score_file: dict, masks: dict[str, np.ndarray], replicates: int = RunSettings.replicates,
                   seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """EER of each trial subset with its subject-bootstrap interval (one draw for all subsets), the trial and
    subject counts; a subset with fewer than 2 subjects reads "too few subjects"."""
    resampler = resampler_for(score_file, replicates, seed)
    genuine = resampler.genuine
    rows = []
    for name, mask in masks.items():
        subjects = _subjects(score_file, mask)
        row = {"subset": name, "genuine trials": int((mask & genuine).sum()),
               "impostor trials": int((mask & ~genuine).sum()), "subjects": subjects}
        if subjects < MIN_GROUP_SUBJECTS or not row["genuine trials"] or not row["impostor trials"]:
            rows.append(row | {"eer": np.nan, "eer ci_low": np.nan, "eer ci_high": np.nan,
                               "note": "too few subjects"})
            continue
        resampled = _resampled([score_file["scores"]], resampler, masked_eer(mask))
        interval = resampled and summarize(name, resampled[0][0], resampled[1][:, 0], level)
        rows.append(row | {"eer": resampled[0][0] if resampled else np.nan,
                           "eer ci_low": interval.ci_low if interval else np.nan,
                           "eer ci_high": interval.ci_high if interval else np.nan,
                           "note": "" if interval else "too few subjects"})
    return pd.DataFrame(rows)


def paired_subset_changes(a: dict, b: dict, masks: dict[str, np.ndarray], replicates: int = RunSettings.replicates,
                          seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per subset, the paired EER change ``a - b`` on the same trials (one subject draw for every subset), its
    interval and p-value, Holm-adjusted within this family of subsets."""
    if a["trial_list"] != b["trial_list"]:
        raise ValueError("the two models were scored on different trial lists; a paired change needs the same "
                         "trials")
    resampler = resampler_for(a, replicates, seed)
    rows = []
    for name, mask in masks.items():
        if _subjects(a, mask) < MIN_GROUP_SUBJECTS:
            rows.append({"subset": name, "change": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan,
                         "note": "too few subjects"})
            continue
        resampled = _resampled([a["scores"], b["scores"]], resampler, masked_eer(mask))
        if resampled is None:
            rows.append({"subset": name, "change": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan,
                         "note": "too few subjects"})
            continue
        (observed, samples) = resampled
        change = summarize(name, observed[0] - observed[1], samples[:, 0] - samples[:, 1], level)
        rows.append({"subset": name, "change": change.difference, "ci_low": change.ci_low,
                     "ci_high": change.ci_high, "p": change.p_value, "note": ""})
    frame = pd.DataFrame(rows, columns=["subset", "change", "ci_low", "ci_high", "p", "note"])
    tested = frame["p"].notna()
    frame["p_holm"] = np.nan
    if tested.any():
        frame.loc[tested, "p_holm"] = holm(frame.loc[tested, "p"].to_numpy())
    return frame


def paired_gap_change(a: dict, b: dict, masks: dict[str, np.ndarray], replicates: int = RunSettings.replicates,
                      seed: int = 0, level: float = 0.95) -> PairedDifference:
    """The paired change of the gap between groups (``gap(a) - gap(b)``, EER ``max - min``) on the same trials,
    one subject draw for both models. Refuses groups with fewer than 2 subjects."""
    small = [name for name, mask in masks.items() if _subjects(a, mask) < MIN_GROUP_SUBJECTS]
    if small:
        raise ValueError(f"groups {small} have fewer than {MIN_GROUP_SUBJECTS} test subjects: too few subjects "
                         "for a gap")
    if a["trial_list"] != b["trial_list"]:
        raise ValueError("the two models were scored on different trial lists; a paired change needs the same "
                         "trials")
    resampler = resampler_for(a, replicates, seed)
    observed, samples = resampled_values([a["scores"], b["scores"]], resampler, gap_metric(masks))
    return summarize("eer gap", observed[0] - observed[1], samples[:, 0] - samples[:, 1], level)
