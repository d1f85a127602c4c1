"""Fine-tuning throughput of a pruned network against dense training, at the same threads and batch.

Three variants of the same ResNet50 (deployed at the study's input size by default): dense;
pruned with ``torch.nn.utils.prune`` masks (``weight = weight_orig * mask`` recomputed in every
forward); pruned with the masks folded in and frozen by gradient hooks (what the study's
fine-tuning uses, :func:`ocular_utils.compression.unstructured.keep_zeros_frozen`). Prints images/s
(median of ``--repeats`` measurements) and each variant's ratio to dense.

    python benchmarks/finetune_throughput.py --threads 1 --size 32 48 --batch 32
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch

from ocular_utils.compression import unstructured
from ocular_utils.core.environment import describe_machine, thread_count
from ocular_utils.models.networks import build_model
from ocular_utils.training.loop import training_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=[32, 48])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compression", type=float, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    dense = build_model("resnet50", 60, 128)
    variants = {
        "dense": lambda: copy.deepcopy(dense),
        "torch prune masks": lambda: unstructured.prune(copy.deepcopy(dense), "layer_weight", args.compression),
        "frozen zeros (study)": lambda: unstructured.keep_zeros_frozen(
            unstructured.prune(copy.deepcopy(dense), "layer_weight", args.compression)),
    }
    print(f"{describe_machine()['cpu']}, torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
          f"input {args.size[0]}x{args.size[1]}, ResNet50 at {args.compression:g}x")
    rates = {}
    with thread_count(args.threads):
        for name, make in variants.items():
            rates[name] = statistics.median(
                training_throughput(make(), tuple(args.size), 60, args.batch, steps=args.steps, copy_model=False)
                for _ in range(args.repeats))
    for name, rate in rates.items():
        print(f"{name:22s} {rate:7.1f} images/s  ({rate / rates['dense']:.2f} of dense)")


if __name__ == "__main__":
    main()
