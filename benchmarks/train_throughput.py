"""Training-step throughput by precision, memory format and compilation: what pays on this machine.

For each network (ResNet50, ResNet18, MobileNetV2), input size (the study's 32x48 and 224x224),
thread count (one, all) and variant, a training step (forward, cross-entropy, backward, SGD step)
on random batches: fp32 against bf16 autocast (``torch.autocast``; on CUDA that is AMP in bf16),
contiguous against channels_last, eager against ``torch.compile``. Prints images/s after one
warm-up step, the warm-up (compilation) seconds, each variant's speed-up over eager fp32
contiguous, and for compiled variants the images after which the compile time is paid back. Each
variant runs ``--repeats`` times, interleaved with the others; the table gives the median and the
spread (largest over smallest images/s, minus one) of its repeats.
Says whether the CPU has native bf16 (``native_bf16``), which decides ``precision: auto``.

``--modes`` says how kernels are chosen: ``study`` is what the study's runs use (deterministic
algorithms, cuDNN's autotuner off: ``seed_everything``), ``fast`` lets cuDNN pick the fastest
algorithm (``cudnn.benchmark``) with no determinism; on a CPU both run the same kernels.
``--batch`` takes several sizes (a GPU is measured at the study's 32 and at a paper-scale batch).

    python benchmarks/train_throughput.py                      # the whole grid (long at 224x224)
    python benchmarks/train_throughput.py --models resnet50 --sizes 32x48 --threads 1 --no-compile
    python benchmarks/train_throughput.py --sizes 32x48 --no-compile --steps 30 \
        --csv data/benchmarks/train_throughput.csv --html data/benchmarks/train_throughput.html
    python benchmarks/train_throughput.py --device cuda --modes study fast --batch 32 128 --steps 20 \
        --steps-large 20 --no-compile --timings gpu_timings.csv     # on a GPU machine
    python benchmarks/train_throughput.py --render gpu_timings.csv --html data/benchmarks/train_throughput_cuda.html

``--html`` writes the table the book's reproducing page shows (a great_tables fragment);
``--timings`` keeps every single timing as it is measured (with the run's heading), and
``--render TIMINGS...`` summarizes such files into ``--csv``/``--html`` without measuring (e.g. timings
taken on a machine without great_tables, or by a run stopped at a time limit).
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import os

import pandas as pd
import torch

from ocular_utils.core.atomic import atomic_write_bytes
from ocular_utils.core.environment import describe_machine, native_bf16, resolve_precision, source_commit, thread_count
from ocular_utils.models.networks import build_model
from ocular_utils.report.display import show, write_html
from ocular_utils.training.loop import training_step_timing

CLASSES = 60
KEYS = ["model", "input", "threads", "batch", "mode"]


def kernel_mode(mode: str) -> None:
    """Choose kernels as the study does (``study``: deterministic, no autotuner) or as fast as cuDNN can (``fast``)."""
    if mode not in ("study", "fast"):
        raise ValueError(f"unknown mode {mode!r}; expected 'study' or 'fast'")
    study = mode == "study"
    torch.use_deterministic_algorithms(study, warn_only=True)
    torch.backends.cudnn.deterministic = study
    torch.backends.cudnn.benchmark = not study


def parse_size(text: str) -> tuple[int, int]:
    """``"32x48"`` -> (32, 48)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is HEIGHTxWIDTH, e.g. 32x48 (got {text!r})") from None
    return height, width


def variants(compile_too: bool, precisions=("fp32", "bf16"), formats=("contiguous", "channels_last")) -> list[dict]:
    """The grid of variants: precision x memory format x compilation."""
    compiled = (False, True) if compile_too else (False,)
    return [{"precision": p, "channels_last": f == "channels_last", "compile": k}
            for p, f, k in itertools.product(precisions, formats, compiled)]


def measure(args, on_timing) -> None:
    """Time every network, size, thread count, batch, kernel mode and variant; hand each timing to ``on_timing``."""
    device = torch.device(args.device)
    for model_name, size, threads, batch, mode in itertools.product(args.models, args.sizes, args.threads,
                                                                   args.batch, args.modes):
        torch.manual_seed(0)
        model = build_model(model_name, CLASSES, 128)
        steps = args.steps if max(size) < 100 else args.steps_large
        cell = {"model": model_name, "input": f"{size[0]}x{size[1]}", "threads": threads, "batch": batch,
                "mode": mode}
        kernel_mode(mode)
        with thread_count(threads):
            for _ in range(args.repeats):  # interleaved, so a slow spell of a shared machine hits every variant
                for variant in variants(args.compile, args.precisions, args.formats):
                    torch._dynamo.reset()
                    on_timing({**cell, **variant,
                               **training_step_timing(model, size, CLASSES, batch, steps, device, **variant)})
    kernel_mode("study")


def summarize(timings: pd.DataFrame) -> pd.DataFrame:
    """One row per cell and variant of the timings: medians of its repeats, their spread, the speed-up over eager
    fp32 contiguous in the study's kernel mode, and for compiled variants the images after which compiling pays."""
    variant_keys = KEYS + ["precision", "channels_last", "compile"]
    grouped = timings.groupby(variant_keys, sort=False)["images_per_second"]
    table = timings.groupby(variant_keys, sort=False)[["first_step_seconds", "images_per_second"]].median()
    table = table.assign(spread=grouped.max() / grouped.min() - 1).reset_index()
    eager = table[(table.precision == "fp32") & ~table.channels_last & ~table["compile"] & (table["mode"] == "study")]
    cell = [k for k in KEYS if k != "mode"]
    reference = table.merge(eager[cell + ["images_per_second", "first_step_seconds"]], on=cell, how="left",
                            suffixes=("", "_eager"))
    table["speedup"] = reference["images_per_second"] / reference["images_per_second_eager"]
    saved_per_image = 1 / reference["images_per_second_eager"] - 1 / reference["images_per_second"]
    extra_seconds = reference["first_step_seconds"] - reference["first_step_seconds_eager"]
    table["break_even_images"] = (extra_seconds / saved_per_image).where(table["compile"] & (saved_per_image > 0))
    return table


def variant_name(row) -> str:
    """``fp32``, ``bf16 channels_last``, ``fp32 compiled``, ...: a variant as the page's column header."""
    return " ".join([row["precision"]] + ["channels_last"] * bool(row["channels_last"])
                    + ["compiled"] * bool(row["compile"]))


def page_table(table: pd.DataFrame, heading: str | list[str]):
    """One row per network and input (and thread count, batch and kernel mode where several were measured): eager
    fp32 images/s, then every variant's speed-up over eager fp32 in the study's kernel mode."""
    table = table.assign(variant=table.apply(variant_name, axis=1))
    keys = ["model", "input"] + [k for k in KEYS[2:] if k in table.columns and table[k].nunique() > 1]
    speedups = table.pivot_table(index=keys, columns="variant", values="speedup", sort=False)
    reference = table[table.variant == "fp32"].set_index(keys)["images_per_second"]
    spread = table.groupby(keys, sort=False)["spread"].max().rename("largest repeat spread (%)")
    frame = pd.concat([reference.rename("fp32 images/s"),
                       speedups.drop(columns="fp32").add_suffix(" (x fp32)"), spread], axis=1)
    return show(frame, title="Training-step throughput and speed-up over eager fp32",
                digits={c: 2 for c in frame.columns if c.endswith("(x fp32)")} | {"fp32 images/s": 1},
                percent=("largest repeat spread (%)",), note=heading)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet18", "mobilenet_v2"])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(32, 48), (224, 224)])
    parser.add_argument("--threads", nargs="+", type=int, default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--batch", nargs="+", type=int, default=[32])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--formats", nargs="+", choices=("contiguous", "channels_last"),
                        default=["contiguous", "channels_last"], help="memory formats")
    parser.add_argument("--modes", nargs="+", choices=("study", "fast"), default=["study"],
                        help="kernel choice: the study's deterministic one, or cuDNN's autotuned fastest")
    parser.add_argument("--steps", type=int, default=6, help="timed steps at small inputs")
    parser.add_argument("--steps-large", type=int, default=2, help="timed steps at inputs of 100 pixels or more")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the table gives medians")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variants")
    parser.add_argument("--csv", help="also write the summary table here")
    parser.add_argument("--timings", help="write every timing here as it is measured (a run stopped early keeps them)")
    parser.add_argument("--html", help="also write the book's table (a great_tables HTML fragment) here")
    parser.add_argument("--render", nargs="+", metavar="TIMINGS",
                        help="measure nothing: summarize these --timings files (one heading each) into --html/--csv")
    args = parser.parse_args()
    if args.render:
        timings = pd.concat([pd.read_csv(path) for path in args.render], ignore_index=True)
        if "heading" not in timings.columns:
            parser.error(f"{args.render} hold no 'heading' column: write them with this script's --timings")
        table = summarize(timings.drop(columns="heading"))
        headings = list(timings["heading"].unique())
        if args.csv:
            table.assign(heading=" ".join(headings)).to_csv(args.csv, index=False)
        if args.html:
            write_html(page_table(table, headings), args.html)
        return
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1 (got {args.repeats})")
    if min(args.threads) < 1:
        parser.error(f"--threads must be at least 1 (got {args.threads})")
    device = torch.device(args.device)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    heading = (f"{describe_machine()['cpu']} ({os.cpu_count()} cores), torch {torch.__version__}, "
               f"device {device}{gpu}, median of {args.repeats} interleaved repeats of {args.steps} timed steps "
               f"after one warm-up ({args.steps_large} at 100 pixels or more); native bf16: {native_bf16(device)}; "
               f"precision auto resolves to {resolve_precision('auto', device)}")
    print(heading)
    stamp = (f"Measured by benchmarks/train_throughput.py at commit {source_commit()} on "
             f"{datetime.date.today().isoformat()}: {heading}.")
    timings = []

    def keep(timing: dict) -> None:
        print(timing, flush=True)
        timings.append(timing)
        if args.timings:  # rewritten whole each time, atomically: a run stopped early keeps every timing so far
            atomic_write_bytes(args.timings, pd.DataFrame(timings).assign(heading=stamp).to_csv(index=False).encode())

    measure(args, keep)
    table = summarize(pd.DataFrame(timings))
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.csv:
        table.assign(heading=stamp).to_csv(args.csv, index=False)
    if args.html:
        write_html(page_table(table, stamp), args.html)


if __name__ == "__main__":
    main()
