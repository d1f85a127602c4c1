"""GPU check of the study's code paths (CUDA), with throughput figures for sizing the paper-scale profiles.

Runs the package's functions directly (no notebooks): synthetic data, ResNet50 training and
evaluation, the five pruning methods with fine-tuning, channel pruning, distillation, and the
training throughput of ResNet50 and MobileNetV2 at the study's and the paper's input sizes.

    python benchmarks/gpu_check.py --out gpu_check.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ocular_utils.compression.distillation import DistillationConfig, train_student
from ocular_utils.compression.registry import METHODS, PruningConfig, compress_model
from ocular_utils.core.environment import describe_machine, seed_everything, select_device
from ocular_utils.data.prepare import prepare_data
from ocular_utils.models.counting import model_cost
from ocular_utils.models.files import save_model
from ocular_utils.models.networks import build_model, deployed_network
from ocular_utils.training.loop import training_throughput
from ocular_utils.training.recipes import BaseConfig, fine_tune, train_base_model
from ocular_utils.verification.scoring import evaluate_on_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default="/tmp/ocular-gpu-check")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args()
    work = Path(args.work)
    seed_everything(0)
    device = select_device("auto")
    report = {"machine": describe_machine(), "device": str(device)}
    print(report, flush=True)
    started = time.perf_counter()
    data = prepare_data({"root": str(work / "data"), "synthetic": {"subjects": 60, "seed": 0},
                                  "image_size": [48, 72], "cache_dir": str(work / "cache")})
    report["data_seconds"] = time.perf_counter() - started
    base_config = BaseConfig.from_dict({"train": {"epochs": 6, "batch_size": 64}})
    started = time.perf_counter()
    base, result = train_base_model(data, work / "base", base_config, device=device)
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
        fine_tune(model, data, work / f"prune-{method}", pruning.finetune, budget, device=device,
                  progress=False)
        eer = evaluate_on_test(model, data, device, replicates=0).report["eer"]
        report["pruning"][method] = {"achieved": achieved, "eer": eer,
                                     "on_cuda": next(model.parameters()).is_cuda}
        print(method, report["pruning"][method], flush=True)
    report["distillation"] = {}
    save_model(base, work / "base", identities=data.split.identity_hash)
    kd = DistillationConfig.from_dict({"train": {"batch_size": 64}})
    for loss in ("none", "logit", "embedding"):
        student, res = train_student(data, work / "base", work / f"kd-{loss}", "mobilenet_v2", loss, kd,
                                     budget, device=device, progress=False)
        report["distillation"][loss] = {"eer": evaluate_on_test(student, data, device, 0).report["eer"],
                                        "images_per_second": res.images_per_second}
        print("kd", loss, report["distillation"][loss], flush=True)
    report["throughput"] = {}
    for name in ("resnet50", "mobilenet_v2", "resnet18"):
        for size, batch in (((48, 72), 64), ((224, 224), 64)):
            rate = training_throughput(build_model(name, 500, 512), size, 500, batch, steps=10, device=device)
            report["throughput"][f"{name} {size[0]}x{size[1]} batch {batch}"] = rate
            print("train images/s", name, size, round(rate), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    torch.backends.cuda.matmul.allow_tf32 = False
    main()
