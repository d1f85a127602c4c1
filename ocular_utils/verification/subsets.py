"""EER and TAR of several models on trial subsets (capture conditions, subject groups), and paired changes of both.

Every metric here is read with the study's one subject bootstrap (:mod:`.resampling`: both subjects
of a trial resampled, one draw for all models compared), so a subset's EER interval and a paired
change between two models on the same trials mean what they mean elsewhere in the study. The gap
between groups is ``max - min`` of their EERs (and ``max / min``), as in the differential
performance measures of ISO/IEC 19795-10; a model "widens the gap" only when the paired change of
the gap excludes zero. The subsets come from :mod:`.conditions`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.environment import RunSettings
from .metrics import ErrorCurve
from .pair_curves import PairCurve, pair_weights, trial_pairs
from .paired import PairedDifference, holm, same_trials, summarize
from .resampling import resampler_for

MIN_GROUP_SUBJECTS = 2  # fewer test subjects in a group: "too few subjects", not a number

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


@dataclass
class SubsetDraws:
    """EER and TAR@FAR of several models on several trial subsets: observed, and under every subject draw.

    One resampler (both subjects of every trial) and one set of draws serve every model and every subset, so
    any derived statistic (a subset's EER, the paired change between two models, the gap between groups, a
    cross / same ratio) is read from the same draws. ``raw[metric]`` is ``draws x models x subsets``, NaN where
    a draw leaves a subset without genuine or impostor trials; a statistic drops those draws, then widens its
    spread by :attr:`spread_correction` (the resampler's small-sample correction) before its interval is read.
    """

    models: list
    subsets: list
    trials: dict  # subset -> (genuine trials, impostor trials, subjects)
    observed: dict  # metric -> models x subsets
    raw: dict  # metric -> draws x models x subsets
    spread_correction: float
    far: float

    def usable(self, subset: str) -> bool:
        """A subset with genuine and impostor trials and at least :data:`MIN_GROUP_SUBJECTS` subjects."""
        genuine, impostor, subjects = self.trials[subset]
        return bool(genuine and impostor and subjects >= MIN_GROUP_SUBJECTS)

    def _read(self, metric: str, model, subset) -> tuple[float, np.ndarray]:
        m, s = self.models.index(model), self.subsets.index(subset)
        return self.observed[metric][m, s], self.raw[metric][:, m, s]

    def _corrected(self, observed: float, samples: np.ndarray, centred: bool = False) -> np.ndarray | None:
        """A statistic's draws widened by :attr:`spread_correction` around their mean (around ``observed`` when
        ``centred``), NaN kept where a draw leaves it undefined; None when nothing can be read."""
        finite = np.isfinite(samples)
        if not np.isfinite(observed) or not finite.any():
            return None
        centre = samples[finite].mean()
        return (observed if centred else centre) + (samples - centre) * self.spread_correction

    def _summary(self, name: str, observed: float, samples: np.ndarray, level: float, centred: bool = False
                 ) -> PairedDifference | None:
        corrected = self._corrected(observed, samples, centred)
        return self._read_off(name, None if corrected is None else (observed, corrected), level)

    @staticmethod
    def _read_off(name: str, drawn: tuple[float, np.ndarray] | None, level: float) -> PairedDifference | None:
        if drawn is None:
            return None
        observed, corrected = drawn
        return summarize(name, observed, corrected[np.isfinite(corrected)], level)

    def value(self, model, subset: str, metric: str = "eer", level: float = 0.95) -> PairedDifference | None:
        """A model's metric on a subset with its interval (``difference`` holds the value); None if too few subjects."""
        if not self.usable(subset):
            return None
        return self._summary(metric, *self._read(metric, model, subset), level)

    def change(self, a, b, subset: str, metric: str = "eer", level: float = 0.95) -> PairedDifference | None:
        """The paired change ``metric(a) - metric(b)`` on a subset (same trials, same draws)."""
        return self._read_off(f"{metric} on {subset}", self.change_draws(a, b, subset, metric), level)

    def change_draws(self, a, b, subset: str, metric: str = "eer") -> tuple[float, np.ndarray] | None:
        """``(observed, draws)`` of the paired change :meth:`change` reads (one value per draw, NaN where a draw
        leaves the subset undefined), for family-wise tests over many changes (:func:`.multiplicity.max_t`)."""
        if not self.usable(subset):
            return None
        (value_a, draws_a), (value_b, draws_b) = self._read(metric, a, subset), self._read(metric, b, subset)
        corrected = self._corrected(value_a - value_b, draws_a - draws_b)
        return None if corrected is None else (value_a - value_b, corrected)

    def gap_change_draws(self, a, b, groups) -> tuple[float, np.ndarray] | None:
        """``(observed, draws)`` of the paired gap change :meth:`gap_change` reads (see :meth:`change_draws`)."""
        groups = self.usable_groups(groups)
        if len(groups) < 2:
            return None
        (gap_a, draws_a), (gap_b, draws_b) = self._gap(a, groups, False), self._gap(b, groups, False)
        corrected = self._corrected(gap_a - gap_b, draws_a - draws_b, centred=True)
        return None if corrected is None else (gap_a - gap_b, corrected)

    def _gap(self, model, groups: list, ratio: bool) -> tuple[float, np.ndarray]:
        m, columns = self.models.index(model), [self.subsets.index(g) for g in groups]
        values = np.concatenate([self.observed["eer"][None, m, columns], self.raw["eer"][:, m, columns]])
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = values.max(axis=1) / values.min(axis=1) if ratio else values.max(axis=1) - values.min(axis=1)
        gap[np.isnan(values).any(axis=1) | ~np.isfinite(gap)] = np.nan
        return gap[0], gap[1:]

    def usable_groups(self, groups) -> list:
        """The groups with enough subjects for a gap (the others read "too few subjects")."""
        return [g for g in groups if self.usable(g)]

    def gap(self, model, groups, ratio: bool = False, level: float = 0.95) -> PairedDifference | None:
        """The EER gap between ``groups`` (``max - min``, or ``max / min``) of one model with its interval; groups
        with too few subjects are left out; None with fewer than two usable groups."""
        groups = self.usable_groups(groups)
        if len(groups) < 2:
            return None
        return self._summary("eer ratio" if ratio else "eer gap", *self._gap(model, groups, ratio), level, centred=True)

    def gap_change(self, a, b, groups, level: float = 0.95) -> PairedDifference | None:
        """The paired change of the EER gap, ``gap(a) - gap(b)``, over the usable groups (same trials, same draws)."""
        return self._read_off("eer gap", self.gap_change_draws(a, b, groups), level)

    def ratio(self, model, numerator: str, denominator: str, level: float = 0.95) -> PairedDifference | None:
        """``EER(numerator) / EER(denominator)`` of one model (e.g. cross phone over same phone) with its interval."""
        if not (self.usable(numerator) and self.usable(denominator)):
            return None
        (top, top_draws), (bottom, bottom_draws) = (self._read("eer", model, numerator),
                                                    self._read("eer", model, denominator))
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._summary("eer ratio", top / bottom if bottom > 0 else np.nan, top_draws / bottom_draws, level)


def subset_draws(score_files: dict, masks: dict[str, np.ndarray], replicates: int = RunSettings.replicates,
                 seed: int = 0, far: float = 0.01) -> SubsetDraws:
    """EER and TAR at ``far`` of every model (``score_files``: name -> loaded score file, one trial list) on every
    subset (``masks``), observed and under each of ``replicates`` subject draws shared by all of them.

    Every draw is read exactly (:class:`.pair_curves.PairCurve`: the same numbers as weighting every trial);
    a draw that leaves the whole trial list without genuine or impostor trials is dropped, as everywhere.
    """
    names = list(score_files)
    if not names:
        raise ValueError("subset_draws needs at least one score file")
    first = score_files[names[0]]
    for name in names[1:]:
        same_trials(first, score_files[name], names[0], name)
    resampler = resampler_for(first, replicates, seed)
    genuine = resampler.genuine
    usable = np.array([w[genuine].sum() > 0 and w[~genuine].sum() > 0
                       for w in map(resampler.weights, resampler.draws)])
    if not usable.any():
        raise ValueError("no bootstrap replicate had both genuine and impostor trials; too few subjects")
    pair, g_weights, i_weights = pair_weights(resampler)
    g_weights, i_weights = g_weights[:, usable], i_weights[:, usable]
    shape = (len(names), len(masks))
    observed = {"eer": np.full(shape, np.nan), "tar": np.full(shape, np.nan)}
    raw = {"eer": np.full((int(usable.sum()),) + shape, np.nan), "tar": np.full((int(usable.sum()),) + shape, np.nan)}
    trials = {}
    for k, (subset, mask) in enumerate(masks.items()):
        mask = np.asarray(mask, bool)
        g, i = mask & genuine, mask & ~genuine
        trials[subset] = (int(g.sum()), int(i.sum()), _subjects(first, mask))
        if not g.any() or not i.any():
            continue
        genuine_pair, impostor_pair, used = trial_pairs(resampler, pair, mask)  # this subset's pairs
        for m, name in enumerate(names):
            scores = np.asarray(score_files[name]["scores"], float)[mask]
            curve = PairCurve(scores, genuine[mask], genuine_pair, impostor_pair, g_weights.shape[0], len(used))
            observed["eer"][m, k], observed["tar"][m, k] = curve.exact.eer_and_tar(far)
            raw["eer"][:, m, k], raw["tar"][:, m, k] = curve.read(g_weights, i_weights[used], far)
    return SubsetDraws(names, list(masks), trials, observed, raw, resampler.spread_correction, far)


def subset_metrics(score_file: dict, masks: dict[str, np.ndarray], replicates: int = RunSettings.replicates,
                   seed: int = 0, level: float = 0.95, far: float = 0.01) -> pd.DataFrame:
    """EER and TAR at ``far`` of each trial subset with subject-bootstrap intervals (one draw for all subsets),
    the trial and subject counts; a subset with fewer than 2 subjects reads "too few subjects"."""
    draws = subset_draws({"model": score_file}, masks, replicates, seed, far)
    rows = []
    for name in draws.subsets:
        genuine, impostor, subjects = draws.trials[name]
        row = {"subset": name, "genuine trials": genuine, "impostor trials": impostor, "subjects": subjects}
        for metric, column in (("eer", "eer"), ("tar", f"tar@far={far:g}")):
            value = draws.value("model", name, metric, level)
            row |= {column: value.difference if value else np.nan,
                    f"{column} ci_low": value.ci_low if value else np.nan,
                    f"{column} ci_high": value.ci_high if value else np.nan}
        rows.append(row | {"note": "" if draws.usable(name) else "too few subjects"})
    return pd.DataFrame(rows)


def changes_table(draws: SubsetDraws, a, b, subsets=None, level: float = 0.95) -> pd.DataFrame:
    """Per subset, the paired EER change ``a - b`` with its interval and p-value, Holm-adjusted within this family
    of subsets (the subsets with too few subjects are not tested)."""
    rows = []
    for name in subsets or draws.subsets:
        change = draws.change(a, b, name, "eer", level)
        rows.append({"subset": name, "change": change.difference if change else np.nan,
                     "ci_low": change.ci_low if change else np.nan, "ci_high": change.ci_high if change else np.nan,
                     "p": change.p_value if change else np.nan, "note": "" if change else "too few subjects"})
    frame = pd.DataFrame(rows, columns=["subset", "change", "ci_low", "ci_high", "p", "note"])
    tested = frame["p"].notna()
    frame["p_holm"] = np.nan
    if tested.any():
        frame.loc[tested, "p_holm"] = holm(frame.loc[tested, "p"].to_numpy())
    return frame


def paired_subset_changes(a: dict, b: dict, masks: dict[str, np.ndarray], replicates: int = RunSettings.replicates,
                          seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per subset, the paired EER change ``a - b`` on the same trials (one subject draw for every subset), its
    interval and p-value, Holm-adjusted within this family of subsets."""
    same_trials(a, b)
    return changes_table(subset_draws({"a": a, "b": b}, masks, replicates, seed), "a", "b", level=level)


def paired_gap_change(a: dict, b: dict, masks: dict[str, np.ndarray], replicates: int = RunSettings.replicates,
                      seed: int = 0, level: float = 0.95) -> PairedDifference:
    """The paired change of the gap between groups (``gap(a) - gap(b)``, EER ``max - min``) on the same trials,
    one subject draw for both models. Refuses groups with fewer than 2 subjects."""
    small = [name for name, mask in masks.items() if _subjects(a, mask) < MIN_GROUP_SUBJECTS]
    if small:
        raise ValueError(f"groups {small} have fewer than {MIN_GROUP_SUBJECTS} test subjects: too few subjects "
                         "for a gap")
    same_trials(a, b)
    change = subset_draws({"a": a, "b": b}, masks, replicates, seed).gap_change("a", "b", list(masks), level)
    if change is None:
        raise ValueError("no bootstrap replicate kept every group's genuine and impostor trials; too few subjects")
    return change
