"""Capture conditions of a trial's two images, and the trial subsets they define.

Every trial compares a probe image with a reference image; each image was captured under some
conditions (``phone``, ``light``, ``session``). :func:`condition_codes` keeps them per trial side as
compact integer codes (what a score file stores); :func:`condition_masks` turns them into the
trial subsets a reader asks about: same phone vs cross phone, same light vs cross light, each
lighting pair. Subject groups (an attribute per subject, e.g. a synthetic skin-tone group) give
within-group trials (:func:`group_masks`): genuine trials of the group's subjects and impostor
trials between two of them. Reading metrics on these subsets, under the study's subject bootstrap,
is :mod:`.subsets` (a chapter's concern; this module is what scoring needs).
"""
from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np
import pandas as pd

CONDITIONS = ("phone", "light", "session")  # capture conditions of an image, kept for both sides of a trial
UNKNOWN = -1  # code of a side whose condition the data does not record


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
