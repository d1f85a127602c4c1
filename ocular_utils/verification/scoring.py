"""Embed images with a model, score verification trials (cosine similarity), keep the scores.

Metrics on the scores are :mod:`ocular_utils.verification.metrics`.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.atomic import atomic_link, atomic_write_bytes
from ..core.environment import RunSettings
from ..data.config import DataConfig
from ..data.images import ImageStore, iterate_images
from ..data.protocols import build_trials
from .conditions import condition_codes
from .metrics import verification_report

SUBSETS = {
    "all": None,
    "same phone": ("same_phone", True),
    "cross phone": ("same_phone", False),
    "same light": ("same_light", True),
    "cross light": ("same_light", False),
}


def _embed_fn(model: torch.nn.Module):
    return model.embed if hasattr(model, "embed") else model


@torch.inference_mode()
def embed_images(model: torch.nn.Module, store: ImageStore, frame: pd.DataFrame, device: torch.device | str = "cpu",
                 batch_size: int = 256) -> np.ndarray:
    """L2-normalized embeddings of the images of ``frame`` (in its row order), in eval mode."""
    was_training = model.training
    model.eval()
    embed = _embed_fn(model)
    chunks = []
    try:
        for batch in iterate_images(store, frame, batch_size):
            chunks.append(torch.nn.functional.normalize(embed(batch.to(device)).float(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy()


def score_trials(embeddings: np.ndarray, trials: pd.DataFrame) -> np.ndarray:
    """Cosine similarity of each trial's probe and reference embeddings."""
    probe = embeddings[trials["probe"].to_numpy()]
    reference = embeddings[trials["reference"].to_numpy()]
    return np.einsum("ij,ij->i", probe, reference)


@dataclass
class Evaluation:
    """Scores and metrics of one model on one set of trials."""

    report: dict
    subsets: pd.DataFrame
    scores: np.ndarray
    trials: pd.DataFrame
    trial_list: str = ""  # fingerprint of the images and trials scored (equal lists pair, others do not)
    conditions: dict = field(default_factory=dict)  # capture conditions of both sides (conditions.condition_codes)
    saved_as: Path | None = None  # the score file that holds exactly these scores, when they were read from one

    @property
    def genuine(self) -> np.ndarray:
        """Genuine trial scores."""
        return self.scores[self.trials["genuine"].to_numpy()]

    @property
    def impostor(self) -> np.ndarray:
        """Impostor trial scores."""
        return self.scores[~self.trials["genuine"].to_numpy()]

    def as_score_file(self) -> dict:
        """The scores as :func:`load_trial_scores` returns a saved file (for paired comparisons in memory)."""
        return {"scores": self.scores, "genuine": self.trials["genuine"].to_numpy(), "trial_list": self.trial_list,
                **{column: self.trials[column].astype(str).to_numpy() for column in SUBJECT_COLUMNS},
                **self.conditions}


def subset_table(scores: np.ndarray, trials: pd.DataFrame, far_targets=(1e-2, 1e-3)) -> pd.DataFrame:
    """EER / TAR@FAR on all trials and on the same/cross phone and lighting subsets the data has."""
    rows = []
    for name, rule in SUBSETS.items():
        if rule is None:
            mask = np.ones(len(trials), bool)
        else:
            column, value = rule
            if trials[column].isna().all():
                continue
            mask = (trials[column] == value).fillna(False).to_numpy(bool)
        genuine = trials["genuine"].to_numpy()[mask]
        if genuine.all() or not genuine.any():
            continue
        report = verification_report(scores[mask], genuine, far_targets=far_targets, replicates=0)
        rows.append({"subset": name} | {k: v for k, v in report.items() if "resolvable" not in k})
    return pd.DataFrame(rows)


def evaluate(model: torch.nn.Module, store: ImageStore, frame: pd.DataFrame, trials: pd.DataFrame | None = None,
             eyes: str = DataConfig.eyes, device: torch.device | str = "cpu",
             replicates: int = RunSettings.replicates, seed: int = 0,
             max_impostors: int | None = DataConfig.max_impostors) -> Evaluation:
    """Verification metrics of ``model`` on the images of ``frame`` (trials built if not given)."""
    if trials is None:
        trials = build_trials(frame, eyes=eyes, max_impostors=max_impostors, seed=seed)
    return evaluate_embeddings(embed_images(model, store, frame, device), frame, trials, replicates, seed)


def evaluate_embeddings(embeddings: np.ndarray, frame: pd.DataFrame, trials: pd.DataFrame,
                        replicates: int = RunSettings.replicates, seed: int = 0) -> Evaluation:
    """Verification metrics of given embeddings of ``frame``'s images (e.g. computed by a mobile runtime)."""
    if len(embeddings) != len(frame):
        raise ValueError(f"{len(embeddings)} embeddings for {len(frame)} images")
    return evaluate_scores(score_trials(embeddings, trials), frame, trials, replicates, seed)


def evaluate_scores(scores: np.ndarray, frame: pd.DataFrame, trials: pd.DataFrame,
                    replicates: int = RunSettings.replicates, seed: int = 0) -> Evaluation:
    """Verification metrics of the scores of ``trials`` (over ``frame``'s images), subject-bootstrap intervals."""
    report = verification_report(scores, trials["genuine"].to_numpy(), trials["probe_subject"].to_numpy(),
                                 trials["reference_subject"].to_numpy(), replicates=replicates, seed=seed)
    return Evaluation(report, subset_table(scores, trials), scores, trials, trial_fingerprint(frame, trials),
                      condition_codes(frame, trials))


def evaluate_saved_scores(path: str | Path, data, replicates: int) -> Evaluation:
    """The test evaluation of scores saved earlier on ``data``'s test trials (no second pass over the images).

    Refuses a file scored on another trial list. The evaluation remembers the file (``saved_as``) when the file
    holds everything :func:`save_scores` would write for it, so saving it again links that file.
    """
    saved = load_trial_scores(path)
    fingerprint = trial_fingerprint(data.split.test, data.trials)
    if saved["trial_list"] != fingerprint:
        raise ValueError(f"{path} was scored on other trials (list {saved['trial_list']}, this data {fingerprint})")
    evaluation = evaluate_scores(saved["scores"], data.split.test, data.trials, replicates, data.config.seed)
    if set(saved) == {"scores", "genuine", "trial_list", *SUBJECT_COLUMNS, *evaluation.conditions}:
        evaluation.saved_as = _scores_file(path)
    return evaluation


def trial_fingerprint(frame: pd.DataFrame, trials: pd.DataFrame) -> str:
    """A hash of the test images (in order; their paths relative to the folder they share, so a study moved or
    cloned elsewhere pairs with its own score files) and of each trial's probe, reference and label."""
    paths = [str(p) for p in frame["path"]]
    shared = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0]) if paths else ""
    digest = hashlib.sha256("\n".join(os.path.relpath(p, shared) if shared else p for p in paths).encode())
    for column in ("probe", "reference", "genuine"):
        digest.update(np.ascontiguousarray(trials[column].to_numpy().astype(np.int64)).tobytes())
    return digest.hexdigest()[:16]


def validation_metric(store: ImageStore, frame: pd.DataFrame, eyes: str = DataConfig.eyes, device="cpu",
                      max_impostors: int | None = DataConfig.validation_max_impostors, seed: int = 0):
    """A function ``model -> {'eer': ...}`` on held-out validation identities (for checkpoint selection).

    The function also takes precomputed embeddings of ``frame``'s images (e.g. from a mobile runtime).
    """
    trials = build_trials(frame, eyes=eyes, max_impostors=max_impostors, seed=seed)

    def metric(model: torch.nn.Module | np.ndarray) -> dict:
        embeddings = model if isinstance(model, np.ndarray) else embed_images(model, store, frame, device)
        report = verification_report(score_trials(embeddings, trials), trials["genuine"].to_numpy(), replicates=0)
        return {"eer": report["eer"], "auc": report["auc"]}

    return metric


def validation_of(data, device) -> callable:
    """The validation-EER function of ``data`` (a StudyData): its held-out validation identities, for choices."""
    cap = data.config.max_impostors
    cap = data.config.validation_max_impostors if cap is None else min(data.config.validation_max_impostors, cap)
    return validation_metric(data.store, data.split.val, data.split.eyes, device, max_impostors=cap,
                             seed=data.config.seed)


def evaluate_on_test(model: torch.nn.Module, data, device, replicates: int) -> Evaluation:
    """Verification metrics of ``model`` on the test trials of ``data`` (a StudyData), subject-bootstrap intervals."""
    return evaluate(model, data.store, data.split.test, data.trials, eyes=data.split.eyes, device=device,
                    replicates=replicates, seed=data.config.seed)


def evaluate_embeddings_on_test(embeddings: np.ndarray, data, replicates: int) -> Evaluation:
    """Verification metrics of embeddings of the test images of ``data`` (a StudyData), in their order."""
    return evaluate_embeddings(embeddings, data.split.test, data.trials, replicates, data.config.seed)


SUBJECT_COLUMNS = ("probe_subject", "reference_subject")


def save_scores(evaluation: Evaluation, run_dir: str | Path, name: str = "scores.npz") -> Path:
    """Store the test trial scores (``<run_dir>/<name>``) for ROC/DET curves and paired comparisons.

    Besides the scores and labels, the file keeps both subjects of every trial (the bootstrap
    resamples both), the capture conditions of both sides as compact codes (``conditions``) and the
    trial list's fingerprint (only equal lists pair). Scores read from a file (``evaluation.saved_as``) are not
    written twice: the new name is a hard link to that file (a copy where the file system cannot link).
    """
    if evaluation.saved_as is not None:
        return atomic_link(evaluation.saved_as, Path(run_dir) / name)
    buffer = io.BytesIO()
    subjects = {column: np.asarray(evaluation.trials[column].astype(str), dtype=str) for column in SUBJECT_COLUMNS}
    np.savez_compressed(buffer, scores=evaluation.scores, genuine=evaluation.trials["genuine"].to_numpy(),
                        trial_list=np.array(evaluation.trial_list), **subjects, **evaluation.conditions)
    return atomic_write_bytes(Path(run_dir) / name, buffer.getvalue())


def _scores_file(path: str | Path) -> Path:
    """A run folder's ``scores.npz``, or ``path`` itself when it names a scores file."""
    path = Path(path)
    return path if path.suffix == ".npz" else path / "scores.npz"


def load_trial_scores(run_dir: str | Path) -> dict:
    """Everything :func:`save_scores` stored (in a run folder or a named file): ``scores``, ``genuine``,
    ``probe_subject``, ``reference_subject`` and the ``trial_list`` hash.

    Score files of older versions, which kept only the probe subject, are refused: rerun the run.
    """
    path = _scores_file(run_dir)
    with np.load(path) as payload:
        missing = [column for column in SUBJECT_COLUMNS if column not in payload.files]
        if missing:
            raise ValueError(f"{path} keeps no {' and no '.join(missing)} (written by an older version that "
                             "resampled only probe subjects); rerun the run that wrote it")
        return {key: payload[key] for key in payload.files} | {"trial_list": str(payload["trial_list"])}


def compare_runs(run_a: str | Path, run_b: str | Path, metric: str = "eer", replicates: int = RunSettings.replicates,
                 seed: int = 0):
    """The paired difference ``metric(a) - metric(b)`` of two saved runs; refuses runs scored on different trials."""
    from .paired import compare_scores

    return compare_scores(load_trial_scores(run_a), load_trial_scores(run_b), metric, replicates, seed,
                          names=(str(run_a), str(run_b)))
