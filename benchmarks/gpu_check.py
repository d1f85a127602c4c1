"""GPU check of the study's code paths (CUDA): every stage runs on the device, at ``precision: auto``.

Runs the package's functions directly (no notebooks): synthetic data, ResNet50 training and
evaluation, every registered compression method at 8x with fine-tuning to a budget (decay
branches included), distillation with three losses, all at ``precision: auto``. Training
throughput by precision, memory format and batch is ``benchmarks/train_throughput.py``'s.

    python benchmarks/gpu_check.py --out gpu_check.json
    python benchmarks/gpu_check.py --device cpu --subjects 12 --epochs 1   # the same paths, small, on a CPU
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ocular_utils.compression.distillation import DistillationConfig, train_student
from ocular_utils.compression.registry import METHODS, PruningConfig, compress_model
from ocular_utils.core.environment import describe_machine, resolve_precision, seed_everything, select_device
from ocular_utils.data.prepare import prepare_data
from ocular_utils.models.counting import model_cost
from ocular_utils.models.files import save_model
from ocular_utils.models.networks import deployed_network
from ocular_utils.training.recipes import BaseConfig, fit_to_budget, train_base_model
from ocular_utils.verification.scoring import evaluate_on_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default="/tmp/ocular-gpu-check")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--device", default="auto", help="auto picks CUDA, then MPS, then CPU")
    parser.add_argument("--subjects", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of base training")
    args = parser.parse_args()
    work = Path(args.work)
    seed_everything(0)
    device = select_device(args.device)
    precision = resolve_precision("auto", device)
    report = {"machine": describe_machine(), "device": str(device), "precision": precision,
              "torch": torch.__version__}
    print(report, flush=True)
    started = time.perf_counter()
    data = prepare_data({"root": str(work / "data"), "synthetic": {"subjects": args.subjects, "seed": 0},
                                  "image_size": [48, 72], "cache_dir": str(work / "cache")})
    report["data_seconds"] = time.perf_counter() - started
    base_config = BaseConfig.from_dict({"train": {"epochs": args.epochs, "batch_size": 64}})
    started = time.perf_counter()
    base, result = train_base_model(data, work / "base", base_config, device=device, precision=precision,
                                    progress=False)
    report["base"] = {"seconds": time.perf_counter() - started, "images_per_second": result.images_per_second,
                      "eer": evaluate_on_test(base, data, device, replicates=50).report["eer"]}
    print("base", report["base"], flush=True)
    pruning = PruningConfig.from_dict({"finetune": {"batch_size": 64}})
    budget = {"images": 640, "points": [0.5, 1.0]}
    report["pruning"] = {}
    for method in METHODS:
        model = compress_model(base, method, 8, data, pruning)
        achieved = model_cost(deployed_network(base), (48, 72))["params"] / \
            model_cost(deployed_network(model), (48, 72))["nonzero_params"]
        started = time.perf_counter()
        fit_to_budget(model, data, work / f"prune-{method}", pruning.finetune, budget, device=device,
                      progress=False, precision=precision)
        eer = evaluate_on_test(model, data, device, replicates=0).report["eer"]
        report["pruning"][method] = {"achieved": achieved, "eer": eer,
                                     "seconds": time.perf_counter() - started,
                                     "on_cuda": next(model.parameters()).is_cuda}
        print(method, report["pruning"][method], flush=True)
    report["distillation"] = {}
    save_model(base, work / "base", identities=data.split.identity_hash)
    kd = DistillationConfig.from_dict({"train": {"batch_size": 64}})
    for loss in ("none", "logit", "embedding"):
        student, res = train_student(data, work / "base", work / f"kd-{loss}", "mobilenet_v2", loss, kd,
                                     budget, device=device, progress=False, precision=precision)
        report["distillation"][loss] = {"eer": evaluate_on_test(student, data, device, 0).report["eer"],
                                        "images_per_second": res.images_per_second}
        print("kd", loss, report["distillation"][loss], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    torch.backends.cuda.matmul.allow_tf32 = False
    main()
