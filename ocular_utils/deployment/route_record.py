"""What a quantization run records: its fp32 parent's identity, the runtime EERs, the artifact sizes and the
models it descends from (its lineage)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.paths import resolve
from ..core.records import display_label, read_record
from ..verification.scoring import Evaluation


def parent_record(parent_dir: str | Path) -> dict:
    """The record of a route's fp32 parent; an error naming the folder when it has not completed."""
    record = read_record(resolve(parent_dir))
    if record is None:
        raise FileNotFoundError(f"the parent model {parent_dir} has no record; run it first")
    return record


def record_fields(route, parent: dict, parent_dir: str, artifacts: pd.DataFrame, scored: pd.DataFrame,
                  evaluation: Evaluation, calibration: pd.DataFrame, sparse_int8_bytes: int | None = None) -> dict:
    """The typed fields of a quantization run's record: the parent's identity, the runtime EERs, sizes, lineage.

    ``evaluation`` is the ExecuTorch int8 evaluation (the record's headline metrics); ``scored`` is
    :func:`.runtime_scoring.score_through_runtimes`' table; ``parent`` the parent's record.
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
