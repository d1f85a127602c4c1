"""``ocular-study``: run a profile's notebooks through papermill, keep the records, build the book.

Examples::

    ocular-study run                       # the embedded default study + book (_build/html)
    ocular-study run --profile smoke       # seconds; what the tests run
    ocular-study run --profile visob --jobs 4 --engine ray --ray-address auto
    ocular-study status --profile default  # which units are done
    torchrun --nproc_per_node 4 -m ocular_utils.runner.cli train --profile visob   # DDP base training
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from ..core.paths import project_root
from ..training import distributed
from . import book, scheduler
from .plan import Planner
from .profiles import available_profiles, load_profile


def plan(profile_name: str, results: str = "results", threads: int | None = None):
    """Load a profile and build the units that can be planned now: ``(profile, units, root, pending)``.

    ``pending`` says what a later round adds (the extra seeds and the chapters wait for the headline runs).
    """
    profile = load_profile(profile_name)
    root = project_root()
    planner = Planner(profile, root, results, threads)
    return profile, planner.build(), root, planner.pending


def book_output(root: Path, profile) -> Path:
    """Where the profile's book goes: ``_build/html`` for the default profile, else ``_build/<profile>/...``."""
    return root if profile.name == "default" else root / "_build" / profile.name


def command_run(args) -> int:
    """Run (or resume) every unit of the profile, round after round, then build the book."""
    profile, units, root, pending = plan(args.profile, args.results, args.threads)
    jobs = args.jobs or profile.jobs
    print(f"profile {profile.name}: {len(units)} notebooks planned, {jobs} at a time, engine {args.engine}; "
          f"results in {Path(args.results) / profile.name}", flush=True)
    if args.dry_run:
        for unit in units.values():
            state = "done" if unit.complete(root) else "to run"
            print(f"  {state:7s} {unit.name:40s} {unit.run_dir}")
        for note in pending:
            print(f"  later   {note}")
        return 0
    started = time.perf_counter()
    seconds, executed, skipped, peak = {}, [], set(), 0
    while True:
        outcome = scheduler.run_units(units, root, jobs=jobs, engine=args.engine, max_units=args.max_units,
                                      ray_address=args.ray_address, progress=not args.quiet,
                                      keep_checkpoints=args.keep_checkpoints)
        seconds |= outcome.seconds
        executed += outcome.executed
        skipped |= set(outcome.skipped) - set(executed)
        peak = max(peak, outcome.peak_rss_bytes)
        finished = len(outcome.executed) + len(outcome.skipped) == len(units)
        if outcome.failed or not finished or not pending:
            break
        profile, next_units, root, pending = plan(args.profile, args.results, args.threads)
        if set(next_units) == set(units):
            raise RuntimeError(f"the plan cannot grow past this round: {pending}")
        added = sorted(set(next_units) - set(units))
        print(f"next round: {len(added)} more notebooks ({', '.join(added[:4])}...)", flush=True)
        units = next_units
    wall = time.perf_counter() - started
    print(f"executed {len(executed)}, skipped (already complete) {len(skipped)}, failed {len(outcome.failed)}, "
          f"blocked {len(outcome.blocked)} in {wall:.0f}s", flush=True)
    timing_path = root / args.results / profile.name / "timings.json"
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    timing_path.write_text(json.dumps({"wall_seconds": wall, "peak_rss_bytes": peak, "units": seconds}, indent=1))
    print(f"peak memory (runner + kernels): {peak / 2**30:.2f} GiB", flush=True)
    for name, error in outcome.failed.items():
        print(f"FAILED {name}: {error}\n  see {units[name].output}", file=sys.stderr)
    if outcome.failed:
        return 1
    if not finished or pending:
        print("stopped before the end (--max-units); run again to resume", flush=True)
        return 0
    if not args.no_book:
        return command_book(args, profile=profile, units=units, root=root)
    return 0


def command_book(args, profile=None, units=None, root=None) -> int:
    """Build the book from the executed notebooks of a profile."""
    pending = []
    if profile is None:
        profile, units, root, pending = plan(args.profile, args.results, args.threads)
    missing = [u.name for u in units.values() if not u.complete(root)] + pending
    if missing:
        print(f"cannot build the book: {len(missing)} units have not run ({missing[:5]}...); "
              f"run `ocular-study run --profile {profile.name}` first", file=sys.stderr)
        return 1
    started = time.perf_counter()
    toc = book.assemble(units, root, profile)
    html = book.build(root, toc, book_output(root, profile), strict=not args.no_strict)
    print(f"book built in {time.perf_counter() - started:.0f}s: {html / 'index.html'}", flush=True)
    return 0


def command_status(args) -> int:
    """Print each unit and whether it is complete."""
    args.dry_run = True
    return command_run(args)


def command_export(args) -> int:
    """Write the phone kit: the completed routes' .pte/.onnx files and a manifest (ocular_utils.deployment.kit)."""
    from ..deployment.kit import write_phone_kit

    profile, units, root, _ = plan(args.profile, args.results)
    routes = [u for u in units.values() if u.kind == "quantize"]
    missing = [u.name for u in routes if not u.complete(root)]
    if not routes or missing:
        raise SystemExit(f"ocular-study: error: the phone kit needs the profile's quantization routes complete "
                         f"({len(missing)} of {len(routes)} missing, e.g. {missing[:2]}); run the study first")
    out = root / (args.out or f"exports/{profile.name}")
    manifest = write_phone_kit([u.run_dir for u in routes], out)
    print(f"phone kit: {len(list(out.glob('*.pte')))} .pte and {len(list(out.glob('*.onnx')))} .onnx files, "
          f"manifest {manifest}")
    return 0


def command_profiles(args) -> int:
    """List the shipped profiles, or print one resolved profile (every default filled in) as YAML."""
    if args.show:
        print(yaml.safe_dump(load_profile(args.show).to_dict(), sort_keys=False), end="")
        return 0
    for name in available_profiles():
        print(f"{name:10s} {load_profile(name).description}")
    return 0


def command_train(args) -> int:
    """Train the base model (or a student) of a profile in its run folder; DDP-aware under torchrun."""
    from ..compression.distillation import DistillationConfig, train_student
    from ..core.environment import RunSettings, seed_everything, select_device, set_threads
    from ..data.prepare import prepare_data
    from ..training.recipes import BaseConfig, train_base_model

    profile, units, root, _ = plan(args.profile, args.results, args.threads)
    name = "base" if args.target == "base" else f"distill/{args.student}-{args.loss}"
    if name not in units:
        raise SystemExit(f"profile {profile.name} has no unit {name!r} (units: {sorted(units)})")
    unit = units[name]
    params = unit.params
    settings = RunSettings.from_dict({k: params[k] for k in ("seed", "threads", "device", "replicates")})
    set_threads(settings.threads)
    seed_everything(settings.seed)
    device = distributed.init_from_env() or select_device(settings.device)
    if not distributed.is_main():  # rank 0 generates and caches the data first; the others then read it
        distributed.barrier()
    data = prepare_data(params["data"], progress=distributed.is_main())
    if distributed.is_main():
        distributed.barrier()
    run_dir = root / unit.run_dir
    if args.target == "base":
        train_base_model(data, run_dir, BaseConfig.from_dict(params["base"]), device=device, seed=settings.seed,
                         progress="bar")
    else:
        train_student(data, root / params["teacher_dir"], run_dir, params["student"], params["loss"],
                      DistillationConfig.from_dict(params["distillation"]), params["budget"], device=device,
                      seed=settings.seed, progress="bar")
    if distributed.is_main():
        print(f"trained {name} in {run_dir}; `ocular-study run --profile {profile.name}` now evaluates it")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    top = argparse.ArgumentParser(prog="ocular-study", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--profile", default="default", help="profile name or path to a .yml (default: default)")
        p.add_argument("--results", default="results",
                       help="results folder, relative to the project (default: results)")
        p.add_argument("--threads", type=int, default=None, help="torch threads per notebook (default: the profile's)")

    run = sub.add_parser("run", help="run (or resume) a profile's notebooks, then build its book")
    common(run)
    run.add_argument("--jobs", type=int, default=None, help="notebooks at once (default: the profile's)")
    run.add_argument("--engine", choices=["local", "ray"], default="local", help="where units run")
    run.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local cluster)")
    run.add_argument("--max-units", type=int, default=None, help="stop after starting this many units")
    run.add_argument("--no-book", action="store_true", help="do not build the book")
    run.add_argument("--no-strict", action="store_true", help="build the book without -W")
    run.add_argument("--dry-run", action="store_true", help="list the units and their state only")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep each finished run's training checkpoints (default: keep only the saved model)")
    run.set_defaults(func=command_run)
    bk = sub.add_parser("book", help="build the book from a profile's executed notebooks")
    common(bk)
    bk.add_argument("--no-strict", action="store_true", help="build without -W")
    bk.set_defaults(func=command_book)
    st = sub.add_parser("status", help="list a profile's units and which are complete")
    common(st)
    st.set_defaults(func=command_status, jobs=None, engine="local", keep_checkpoints=False)
    ex = sub.add_parser("export", help="write the phone kit: the routes' .pte/.onnx files and a manifest")
    common(ex)
    ex.add_argument("--out", default=None, help="folder, relative to the project (default: exports/<profile>)")
    ex.set_defaults(func=command_export)
    pr = sub.add_parser("profiles", help="list the shipped profiles, or show one with every default filled in")
    pr.add_argument("--show", metavar="PROFILE", default=None, help="profile name or .yml path to print resolved")
    pr.set_defaults(func=command_profiles)
    tr = sub.add_parser("train", help="train the base model or a student (use under torchrun for DDP)")
    common(tr)
    tr.add_argument("--target", choices=["base", "student"], default="base")
    tr.add_argument("--student", default=None, help="student network (with --target student)")
    tr.add_argument("--loss", default="logit", help="distillation loss (with --target student)")
    tr.set_defaults(func=command_train)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocular-study``."""
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
