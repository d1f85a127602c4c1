"""A route's int8 artifacts scored through the runtimes a phone runs (ExecuTorch, ONNX Runtime) on the test trials,
paired with the parent's stored scores."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import nn

from ..verification.paired import compare_scores
from ..verification.scoring import (
    Evaluation,
    embed_images,
    evaluate_embeddings_on_test,
    load_trial_scores,
    save_scores,
    validation_of,
)
from . import quantize


def score_through_runtimes(network: nn.Module, artifacts: pd.DataFrame, data, parent_dir: str | Path,
                           run_dir: str | Path, replicates: int) -> tuple[dict[str, Evaluation], pd.DataFrame]:
    """Embed the test images through each scored int8 artifact; metrics, stored scores and paired differences.

    Returns ``{runtime: Evaluation}`` and a table with, per runtime, the EER, the paired EER
    difference to the parent (its stored test scores: the same trials), the validation EER through
    the runtime (what choices among deployable models read) and the smallest per-image cosine
    between the runtime's embedding and the parent's eager embedding. ExecuTorch's scores are the
    run's ``scores.npz``; ONNX Runtime's are ``scores-onnxruntime.npz``.
    """
    test, val = data.split.test, data.split.val
    reference = embed_images(network, data.store, test)
    parent = load_trial_scores(parent_dir)
    validate = validation_of(data, "cpu")
    evaluations, rows = {}, []
    scored = artifacts[artifacts["scored"] & (artifacts["precision"] == "int8")]
    for _, artifact in scored.iterrows():
        runtime = artifact["runtime"]
        embed = quantize.embed_executorch if runtime == "executorch" else quantize.embed_onnx
        embeddings = embed(artifact["file"], data.store, test)
        evaluation = evaluate_embeddings_on_test(embeddings, data, replicates)
        save_scores(evaluation, run_dir, "scores.npz" if runtime == "executorch" else f"scores-{runtime}.npz")
        paired = compare_scores(evaluation.as_score_file(), parent, "eer", max(replicates, 1), data.config.seed,
                                names=(f"the {runtime} int8 model", f"the parent {parent_dir}"))
        evaluations[runtime] = evaluation
        eer = evaluation.report["eer"]
        rows.append({"runtime": runtime, "eer": eer, "parent_eer": eer - paired.difference,
                     "difference": paired.difference, "ci_low": paired.ci_low, "ci_high": paired.ci_high,
                     "p_value": paired.p_value,
                     "validation_eer": validate(embed(artifact["file"], data.store, val))["eer"],
                     "min_cosine": quantize.min_cosine(embeddings, reference)})
    return evaluations, pd.DataFrame(rows)
