"""Benchmark: what channel pruning and unstructured masks buy a dense kernel (prints figures).

ResNet50's deployed embedding network at 224x224, batch 1, one thread: dense vs channel-pruned
to 1/c of the parameters (plain and with channels rounded to multiples of 8) vs unstructured
layer_weight at c, in eager PyTorch and ONNX Runtime. Weights are random: speed does not
depend on their values, only on the shapes (and, for sparsity, on zeros a dense kernel ignores).

    .venv/bin/python benchmarks/structured_speedup.py --compression 8 --json out.json
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch

from ocular_utils.compression import channels as structured
from ocular_utils.compression import unstructured as pruning
from ocular_utils.core.environment import describe_machine
from ocular_utils.deployment import latency
from ocular_utils.models import counting as costs
from ocular_utils.models.networks import build_model, deployed_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compression", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime"])
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    size = (args.size, args.size)
    base = build_model("resnet50", num_classes=100, embedding_dim=128).eval()
    example = torch.randn(1, 3, *size)
    batch = (torch.randn(8, 3, *size), torch.randint(0, 100, (8,)))
    models = {"dense": base,
              f"channel_magnitude {args.compression:g}x": structured.channel_prune(
                  base, "channel_magnitude", args.compression, example),
              f"channel_magnitude {args.compression:g}x round8": structured.channel_prune(
                  base, "channel_magnitude", args.compression, example, round_to=8),
              f"layer_weight {args.compression:g}x": pruning.make_permanent(
                  pruning.prune(copy.deepcopy(base), "layer_weight", args.compression, batch=batch))}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, model in models.items():
            network = deployed_network(model).eval()
            cost = costs.model_cost(network, size)
            table = latency.benchmark_network(name.replace(" ", "_"), network, size, Path(folder), args.runtimes,
                                              args.threads, repeats=args.repeats, warmup=3)
            for _, r in table.iterrows():
                rows.append({"model": name, "runtime": r["runtime"], "median_ms": r["median_ms"],
                             "params": cost["params"], "nonzero_params": cost["nonzero_params"],
                             "macs": cost["macs"], "nonzero_macs": cost["nonzero_macs"]})
    dense = {r["runtime"]: r["median_ms"] for r in rows if r["model"] == "dense"}
    print(f"{describe_machine()['cpu']}, torch {torch.__version__}, {args.threads} thread(s), batch 1, {size}")
    print(f"{'model':38s} {'runtime':12s} {'params M':>9s} {'nonzero M':>9s} {'GMACs':>6s} {'ms':>8s} {'speed-up':>8s}")
    for r in rows:
        r["speedup"] = dense[r["runtime"]] / r["median_ms"]
        print(f"{r['model']:38s} {r['runtime']:12s} {r['params'] / 1e6:9.2f} {r['nonzero_params'] / 1e6:9.2f} "
              f"{r['macs'] / 1e9:6.2f} {r['median_ms']:8.1f} {r['speedup']:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": describe_machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
