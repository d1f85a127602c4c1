"""Subject-independent protocols: train / validation / test splits and verification trials.

Train, validation and test never share a subject (both eyes of a person count as the same
subject). Validation subjects are taken from the training side and are only used to pick
checkpoints. Trials compare a probe with an enrolment image: enrolment on the first session
(VISOB visit 1), probes on later sessions.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import DataConfig
from .schema import DatasetError, OcularDataset
from .ufpr import PROTOCOLS as UFPR_PROTOCOLS

EYE_MODES = ("separate", "merged")


class IdentityOverlapError(DatasetError):
    """Train (or validation) and test share subjects: the evaluation would not be subject-independent."""


@dataclass
class Split:
    """The images of one protocol: train (with class labels), validation and test, plus official pairs."""

    dataset: str
    protocol: str
    eyes: str
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    pairs: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["identity", "images", "reason"]))

    @property
    def identity_hash(self) -> str:
        """Hash of the sorted training identities: the class order of a head trained on this split."""
        identities = sorted(self.train["identity"].unique())
        return hashlib.sha256("\n".join(identities).encode()).hexdigest()[:16]

    @property
    def num_classes(self) -> int:
        """Number of training identities (the size of the training-only classification head)."""
        return int(self.train["label"].max()) + 1

    def sizes(self) -> pd.DataFrame:
        """Subjects, identities and images per part: the split table every chapter reports."""
        rows = []
        for part in ("train", "val", "test"):
            frame = getattr(self, part)
            rows.append(dict(part=part, subjects=frame["subject"].nunique(), identities=frame["identity"].nunique(),
                             images=len(frame)))
        return pd.DataFrame(rows)


def assign_identities(frame: pd.DataFrame, eyes: str) -> pd.DataFrame:
    """Add ``identity`` and ``flip`` columns: eyes as separate identities, or merged with left eyes mirrored."""
    if eyes not in EYE_MODES:
        raise ValueError(f"unknown eyes mode {eyes!r}; expected one of {EYE_MODES}")
    frame = frame.copy()
    if eyes == "separate":
        frame["identity"] = frame["subject"] + "_" + frame["eye"]
        frame["flip"] = False
    else:
        frame["identity"] = frame["subject"]
        frame["flip"] = frame["eye"] == "l"
    return frame


def check_disjoint(train: pd.DataFrame, test: pd.DataFrame, what: str = "train and test") -> None:
    """Refuse splits whose parts share subjects."""
    shared = sorted(set(train["subject"]) & set(test["subject"]))
    if shared:
        raise IdentityOverlapError(
            f"{what} share {len(shared)} subjects (e.g. {shared[:5]}); the evaluation must be subject-independent"
        )


def _drop_small_identities(frame: pd.DataFrame, min_images: int, need_sessions: bool) -> tuple[pd.DataFrame, list]:
    counts = frame.groupby("identity").agg(images=("path", "size"), sessions=("session", "nunique"))
    too_few = counts[counts["images"] < min_images]
    excluded = [dict(identity=i, images=int(r.images), reason=f"fewer than {min_images} images")
                for i, r in too_few.iterrows()]
    if need_sessions:
        one_session = counts[(counts["sessions"] < 2) & (counts["images"] >= min_images)]
        excluded += [dict(identity=i, images=int(r.images), reason="only one session (no cross-session trial)")
                     for i, r in one_session.iterrows()]
    dropped = {row["identity"] for row in excluded}
    return frame[~frame["identity"].isin(dropped)], excluded


def _label(train: pd.DataFrame) -> pd.DataFrame:
    identities = sorted(train["identity"].unique())
    mapping = {identity: index for index, identity in enumerate(identities)}
    train = train.copy()
    train["label"] = train["identity"].map(mapping).astype(int)
    return train


def subject_split(dataset: OcularDataset, seed: int = 0, test_fraction: float = DataConfig.test_fraction,
                  val_fraction: float = DataConfig.val_fraction, eyes: str = DataConfig.eyes,
                  min_images: int = DataConfig.min_images) -> Split:
    """A seeded subject-independent split: disjoint train / validation / test subjects."""
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ValueError("fractions must satisfy 0 < test, 0 <= val, test + val < 1 "
                         f"(got {test_fraction}, {val_fraction})")
    frame = assign_identities(dataset.frame, eyes)
    multi_session = frame["session"].nunique() > 1
    frame, excluded = _drop_small_identities(frame, min_images, need_sessions=multi_session)
    subjects = np.array(sorted(frame["subject"].unique()))
    if len(subjects) < 5:
        raise DatasetError(f"{dataset.name} has {len(subjects)} usable subjects; a split needs at least 5 "
                           "(2 test, 2 validation, 1 training)")
    order = np.random.default_rng(seed).permutation(len(subjects))
    # at least two subjects per evaluated part: one subject alone yields no impostor trial
    n_test = max(2, int(round(test_fraction * len(subjects))))
    n_val = max(2, int(round(val_fraction * len(subjects)))) if val_fraction > 0 else 0
    if n_test + n_val >= len(subjects):
        raise DatasetError(f"{len(subjects)} subjects are too few for test {n_test} + validation {n_val} + train")
    test_s = set(subjects[order[:n_test]])
    val_s = set(subjects[order[n_test:n_test + n_val]])
    parts = {
        "train": frame[~frame["subject"].isin(test_s | val_s)],
        "val": frame[frame["subject"].isin(val_s)],
        "test": frame[frame["subject"].isin(test_s)],
    }
    check_disjoint(parts["train"], parts["test"])
    check_disjoint(parts["val"], parts["test"], "validation and test")
    check_disjoint(parts["train"], parts["val"], "train and validation")
    notes = [f"seeded subject-independent split (seed {seed}): {len(subjects) - n_test - n_val} train, "
             f"{n_val} validation, {n_test} test subjects"]
    if excluded:
        notes.append(f"{len(excluded)} identities excluded (too few images or sessions)")
    return Split(dataset=dataset.name, protocol="subject", eyes=eyes,
                 train=_label(parts["train"]).reset_index(drop=True), val=parts["val"].reset_index(drop=True),
                 test=parts["test"].reset_index(drop=True), notes=notes,
                 excluded=pd.DataFrame(excluded, columns=["identity", "images", "reason"]))


def ufpr_split(dataset: OcularDataset, protocol: str, fold: int, eyes: str = DataConfig.eyes,
               allow_overlap: bool = False) -> Split:
    """The official UFPR-Periocular split and test pairs of ``protocol`` / ``fold``."""
    if protocol not in UFPR_PROTOCOLS:
        raise ValueError(f"unknown UFPR protocol {protocol!r}; expected one of {UFPR_PROTOCOLS}")
    if protocol not in dataset.protocols or fold not in dataset.protocols[protocol]:
        present = {p: sorted(f) for p, f in dataset.protocols.items()}
        raise DatasetError(f"{dataset.root} has no protocol files for {protocol} fold {fold} (present: {present})")
    entry = dataset.protocols[protocol][fold]
    frame = assign_identities(dataset.frame, eyes)
    by_file = frame.assign(file=frame["path"].map(lambda p: p.rsplit("/", 1)[-1])).set_index("file")
    parts = {part: by_file.loc[entry[part]["file"]].reset_index() for part in ("train", "val", "test")}
    if not allow_overlap:
        try:
            check_disjoint(parts["train"], parts["test"])
            check_disjoint(parts["val"], parts["test"], "validation and test")
        except IdentityOverlapError as error:
            raise IdentityOverlapError(f"UFPR {protocol} fold {fold}: {error}. closed_world is not "
                                       "subject-independent; pass allow_overlap=True to use it anyway") from None
    test = parts["test"]
    pairs = None
    if entry["pairs"] is not None:
        position = {name: i for i, name in enumerate(test["file"])}
        official = entry["pairs"]
        outside = sorted(set(official["probe"]) - set(position) | set(official["reference"]) - set(position))
        if outside:
            raise DatasetError(f"{protocol} fold {fold} test pairs name {len(outside)} images outside the test list "
                               f"(e.g. {outside[:3]})")
        pairs = pd.DataFrame({"probe": official["probe"].map(position).to_numpy(),
                              "reference": official["reference"].map(position).to_numpy(),
                              "genuine": official["genuine"].to_numpy()})
    notes = [f"official UFPR-Periocular protocol {protocol}, fold {fold}"]
    return Split(dataset=dataset.name, protocol=f"{protocol}/fold{fold}", eyes=eyes,
                 train=_label(parts["train"].drop(columns="file")),
                 val=parts["val"].drop(columns="file"), test=test.drop(columns="file"), pairs=pairs, notes=notes)


def make_split(dataset: OcularDataset, protocol: str = DataConfig.protocol, fold: int = 1, seed: int = 0,
               test_fraction: float = DataConfig.test_fraction, val_fraction: float = DataConfig.val_fraction,
               eyes: str = DataConfig.eyes, min_images: int = DataConfig.min_images,
               allow_overlap: bool = False) -> Split:
    """Split ``dataset`` by ``protocol``: ``subject`` (seeded) or a UFPR official protocol name."""
    if protocol == "subject":
        return subject_split(dataset, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction,
                             eyes=eyes, min_images=min_images)
    if protocol in UFPR_PROTOCOLS:
        if dataset.layout != "ufpr":
            raise DatasetError(f"protocol {protocol!r} needs the UFPR-Periocular layout; "
                               f"{dataset.name} is {dataset.layout}")
        if not dataset.protocols:
            split = subject_split(dataset, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction,
                                  eyes=eyes, min_images=min_images)
            split.notes.insert(0, f"no experimentalProtocol/ files under {dataset.root}: protocol {protocol} "
                                  "replaced by a seeded subject-independent split")
            return split
        return ufpr_split(dataset, protocol, fold, eyes=eyes, allow_overlap=allow_overlap)
    raise ValueError(f"unknown protocol {protocol!r}; expected 'subject' or one of {UFPR_PROTOCOLS}")


def build_trials(test: pd.DataFrame, pairs: pd.DataFrame | None = None, eyes: str = DataConfig.eyes,
                 max_impostors: int | None = DataConfig.max_impostors, seed: int = 0) -> pd.DataFrame:
    """Verification trials over the test images (row positions of ``test``).

    Official ``pairs`` are used as given. Otherwise enrolment images are those of each identity's
    first session and probes those of later sessions (all pairs when there is one session only);
    with separate eyes only same-side eyes are compared. Impostor trials are subsampled (seeded,
    uniformly) to at most ``max_impostors``. Columns: ``probe``, ``reference``, ``genuine``,
    ``probe_subject``, ``reference_subject`` (both subjects of every trial: the bootstrap resamples both),
    ``same_phone``, ``same_light``.
    """
    test = test.reset_index(drop=True)
    if pairs is not None:
        trials = pairs[["probe", "reference", "genuine"]].copy()
    else:
        trials = _cross_session_trials(test, eyes, max_impostors, seed)
    subjects = test["subject"].to_numpy()
    trials["probe_subject"] = subjects[trials["probe"].to_numpy()]
    trials["reference_subject"] = subjects[trials["reference"].to_numpy()]
    for column, name in (("phone", "same_phone"), ("light", "same_light")):
        values = test[column].to_numpy()
        probe, reference = values[trials["probe"].to_numpy()], values[trials["reference"].to_numpy()]
        same = pd.Series(probe == reference, dtype="boolean")
        same[(probe == "") | (reference == "")] = pd.NA  # unknown condition on either side: not a subset member
        trials[name] = same.array
    if not trials["genuine"].any() or trials["genuine"].all():
        raise DatasetError("the test set yields no genuine or no impostor trials; it needs at least two identities "
                           "with two images each")
    return trials.reset_index(drop=True)


def _cross_session_trials(test: pd.DataFrame, eyes: str, max_impostors: int | None, seed: int,
                          chunk: int = 2048) -> pd.DataFrame:
    first_session = test.groupby("identity")["session"].transform("min")
    single_session = test["session"].nunique() == 1
    if single_session:
        enrol_mask = probe_mask = np.ones(len(test), bool)
    else:
        enrol_mask = (test["session"] == first_session).to_numpy()
        probe_mask = ~enrol_mask
    enrol, probe = np.flatnonzero(enrol_mask), np.flatnonzero(probe_mask)
    identity = pd.factorize(test["identity"])[0]
    side = pd.factorize(test["eye"])[0] if eyes == "separate" else np.zeros(len(test), int)

    def masks(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        comparable = side[rows][:, None] == side[enrol][None, :]
        if single_session:
            comparable &= rows[:, None] < enrol[None, :]
        genuine = comparable & (identity[rows][:, None] == identity[enrol][None, :])
        return genuine, comparable & ~genuine

    # Probes are processed in chunks so that memory stays bounded on large test sets; a fixed,
    # seeded set of impostor positions (exactly max_impostors of them) is drawn up front.
    chunks = [probe[i:i + chunk] for i in range(0, len(probe), chunk)]
    counts = [int(masks(rows)[1].sum()) for rows in chunks]
    total = sum(counts)
    chosen = None
    if max_impostors is not None and total > max_impostors:
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_impostors, replace=False))
    parts, offset = [], 0
    for rows, count in zip(chunks, counts):
        genuine, impostor = masks(rows)
        gi, gj = np.nonzero(genuine)
        ii, ij = np.nonzero(impostor)
        if chosen is not None:
            local = chosen[(chosen >= offset) & (chosen < offset + count)] - offset
            ii, ij = ii[local], ij[local]
        offset += count
        parts.append(pd.DataFrame({
            "probe": np.concatenate([rows[gi], rows[ii]]),
            "reference": np.concatenate([enrol[gj], enrol[ij]]),
            "genuine": np.concatenate([np.ones(len(gi), bool), np.zeros(len(ii), bool)]),
        }))
    trials = pd.concat(parts, ignore_index=True)
    return trials.sort_values("genuine", ascending=False, kind="stable").reset_index(drop=True)
