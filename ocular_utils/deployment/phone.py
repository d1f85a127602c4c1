"""What a quantization unit does: write a parent model's phone artifacts, score them through the runtimes.

For each input size the unit writes four files: the fp32 and int8 ExecuTorch programs (``.pte``,
XNNPACK) and the fp32 and int8 ONNX files. At the study's input the int8 artifacts are calibrated
on ``calibration_images`` training images and scored on the test trials through ExecuTorch and
ONNX Runtime; at other sizes (latency only, never scored) the first calibration batch, resized, is
used. :func:`time_artifacts` times every artifact (the latency unit calls it, alone on the CPU).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd
from torch import nn

from ..core.paths import resolve
from ..models.files import load_model
from ..models.networks import deployed_network
from ..verification.paired import compare_scores
from ..verification.scoring import (
    Evaluation,
    embed_images,
    evaluate_embeddings_on_test,
    load_trial_scores,
    save_scores,
    validation_of,
)
from . import export, latency, quantize

RUNTIME_FILES = {"executorch": ".pte", "onnxruntime": ".onnx"}


def write_artifacts(network: nn.Module, data, calibration: pd.DataFrame, config: quantize.QuantizationConfig,
                    input_sizes, out_dir: str | Path) -> pd.DataFrame:
    """fp32 and int8 ``.pte`` and ``.onnx`` files of ``network`` at each input size; one row per file.

    The int8 ``.pte`` passes the delegation check (its non-delegated float operators are listed in
    ``outside_delegate``). fp32 files are checked against eager PyTorch (``max_abs_diff``).
    """
    out_dir = Path(out_dir)
    study_size = tuple(data.image_size)
    rows = []
    for size in map(tuple, input_sizes):
        tag = export.size_tag(size)
        batches = quantize.calibration_batches(data.store, calibration, config.calibration_batch, size)
        if size != study_size:
            batches = batches[:1]  # latency only: one batch sets the ranges
        calibrated = sum(len(b) for b in batches)
        int8 = quantize.quantize_pt2e(network, batches, config.per_channel)
        outside = quantize.lower_executorch(int8, out_dir / f"int8-{tag}.pte", size)
        fp32_pte = export.export_executorch(network, out_dir / f"fp32-{tag}.pte", size)
        fp32_onnx = export.export_onnx(network, out_dir / f"fp32-{tag}.onnx", size)
        quantize.quantize_onnx(fp32_onnx, out_dir / f"int8-{tag}.onnx", batches, config.per_channel)
        pte_diff = export.verify_executorch(network, fp32_pte, size)
        onnx_diff = export.verify_onnx(network, fp32_onnx, size)
        for runtime, suffix in RUNTIME_FILES.items():
            for precision in ("fp32", "int8"):
                path = out_dir / f"{precision}-{tag}{suffix}"
                rows.append({"runtime": runtime, "precision": precision, "input": tag, "file": str(path),
                             "bytes": path.stat().st_size, "calibration_images": calibrated if precision == "int8"
                             else None, "scored": size == study_size,
                             "max_abs_diff": {"executorch": pte_diff, "onnxruntime": onnx_diff}[runtime]
                             if precision == "fp32" else None,
                             "outside_delegate": ", ".join(outside) if runtime == "executorch" and
                             precision == "int8" else None})
    return pd.DataFrame(rows)


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


def time_artifacts(run_dirs, threads: int, **timing) -> pd.DataFrame:
    """Batch-1 latency of every artifact of the quantization runs in ``run_dirs``, and of each parent in eager.

    One row per (run, runtime, precision, input); ``run`` is the quantization run's folder name.
    """
    from ..core.records import read_record

    rows = []
    for run_dir in run_dirs:
        record = read_record(resolve(run_dir))
        if record is None:
            raise FileNotFoundError(f"quantization run {run_dir} has no complete record")
        run = Path(run_dir).name
        artifacts = pd.DataFrame(record["details"]["artifacts"])
        network = deployed_network(load_model(resolve(record["params"]["parent_dir"])))
        for tag in artifacts["input"].unique():
            result = latency.time_eager(network, export.size_from_tag(tag), threads, **timing)
            rows.append({"run": run, "runtime": "eager", "precision": "fp32", "input": tag,
                         "threads": threads, "file_bytes": None, **asdict(result)})
        for _, artifact in artifacts.iterrows():
            timer = latency.time_executorch if artifact["runtime"] == "executorch" else latency.time_onnx
            result = timer(resolve(artifact["file"]), export.size_from_tag(artifact["input"]), threads, **timing)
            rows.append({"run": run, "runtime": artifact["runtime"], "precision": artifact["precision"],
                         "input": artifact["input"], "threads": threads, "file_bytes": artifact["bytes"],
                         **asdict(result)})
    return pd.DataFrame(rows)


def time_routes(run_dirs, threads: int, **timing) -> pd.DataFrame:
    """:func:`time_artifacts` of the quantization runs with each run's family, or an empty frame without runs."""
    from ..core.records import load_records

    if not run_dirs:
        return pd.DataFrame(columns=["run", "runtime", "precision", "input", "median_ms", "family"])
    families = pd.concat([load_records(resolve(run_dir)) for run_dir in run_dirs])[["run", "family"]]
    return time_artifacts(run_dirs, threads, **timing).merge(families, on="run")


def artifact_sizes(study_size, input_sizes) -> list[list[int]]:
    """The input sizes a route writes artifacts for: the study's input first (it is scored), then the others."""
    return [list(study_size)] + [list(s) for s in input_sizes if tuple(s) != tuple(study_size)]


def parent_record(parent_dir: str | Path) -> dict:
    """The record of a route's fp32 parent; an error naming the folder when it has not completed."""
    from ..core.records import read_record

    record = read_record(resolve(parent_dir))
    if record is None:
        raise FileNotFoundError(f"the parent model {parent_dir} has no record; run it first")
    return record


def record_fields(route, parent: dict, parent_dir: str, artifacts: pd.DataFrame, scored: pd.DataFrame,
                  evaluation: Evaluation, calibration: pd.DataFrame, sparse_int8_bytes: int | None = None) -> dict:
    """The typed fields of a quantization run's record: the parent's identity, the runtime EERs, sizes, lineage.

    ``evaluation`` is the ExecuTorch int8 evaluation (the record's headline metrics); ``scored`` is
    :func:`score_through_runtimes`' table; ``parent`` the parent's record.
    """
    study = artifacts[artifacts["scored"]]
    size = {f"{r.precision}_{'pte' if r.runtime == 'executorch' else 'onnx'}_bytes": int(r.bytes)
            for r in study.itertuples()}
    paired = {f"{row['runtime']}.{key}": row[key] for _, row in scored.iterrows()
              for key in ("eer", "parent_eer", "difference", "ci_low", "ci_high", "p_value", "validation_eer",
                          "min_cosine")}
    identity = {key: parent.get(key) for key in ("backbone", "method", "requested_compression", "student", "kd_loss",
                                                 "training_images", "still_improving")}
    executorch = scored[scored["runtime"] == "executorch"]
    validation = {"validation_eer": float(executorch["validation_eer"].iloc[0])} if len(executorch) else {}
    return identity | {
        "family": f"{route.name} route", "achieved_compression": parent.get("achieved_compression"),
        "metrics": evaluation.report | validation | {"paired." + k: v for k, v in paired.items()},
        "model": {key: parent["model"].get(key) for key in ("params", "nonzero_params", "macs", "nonzero_macs",
                                                            "reference_params")}
        | size | {"stored_bytes": size.get("int8_pte_bytes"), "sparse_int8_bytes": sparse_int8_bytes},
        "details": {"route": route.name, "steps": list(route.steps), "parents": lineage(parent_dir),
                    "parent_kind": parent.get("kind"),
                    "parent_family": parent.get("family"), "artifacts": artifacts.to_dict("records"),
                    "runtimes": scored.to_dict("records"), "subsets": evaluation.subsets.to_dict("records"),
                    "calibration": {"images": len(calibration), "subjects": int(calibration["subject"].nunique()),
                                    "split": "train"}},
        "files": {"scores": "scores.npz", "artifacts": "artifacts"},
    }


def lineage(run_dir: str | Path) -> list[dict]:
    """The models a route descends from, nearest first: each one's run folder, kind and label."""
    from ..core.records import display_label, read_record

    chain, seen = [], set()
    while run_dir and str(run_dir) not in seen:
        seen.add(str(run_dir))
        record = read_record(resolve(run_dir))
        if record is None:
            raise FileNotFoundError(f"{run_dir} has no complete record")
        chain.append({"run_dir": str(run_dir), "kind": record["kind"], "label": display_label(record)})
        params = record["params"]
        run_dir = params.get("parent_dir") or params.get("base_dir") or params.get("teacher_dir")
    return chain
