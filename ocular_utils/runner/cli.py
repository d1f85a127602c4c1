"""``ocular-study``: run a profile's notebooks through papermill, keep the records, build the book.

Examples::

    ocular-study run                       # the embedded default study + book (_build/html)
    ocular-study run --profile smoke       # seconds; what the tests run
    ocular-study run --profile visob --jobs 4 --engine ray --ray-address auto
    ocular-study status --profile default  # which units are done
    ocular-study publish                   # push the built book to gh-pages (ghp-import)
    torchrun --nproc_per_node 4 -m ocular_utils.runner.cli train --profile visob   # DDP base training
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from ..core.atomic import atomic_write_json
from ..core.paths import project_root
from ..training import distributed
from . import book, cleanup, dry_run, failed_units, lock, preflight, scheduler
from .plan import Planner
from .profiles import available_profiles, load_profile


class UserError(Exception):
    """A mistake in what the user asked for (printed as one ``ocular-study: error:`` line, exit status 2)."""


# Errors raised for bad input anywhere in the package (unknown profile/method, impossible ratio, missing or
# malformed data): one line for people, the traceback with --debug.
USER_ERRORS = (UserError, lock.FolderLocked, *scheduler.USER_ERROR_BASES)


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one ``ocular-study: error:`` line (exit 2), like every other user error."""

    def error(self, message: str):
        self.exit(2, f"ocular-study: error: {message} (see `{self.prog} --help`)\n")


def at_least_one(text: str) -> int:
    """An argparse type: an integer of at least 1 (jobs, threads, units)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def plan(profile_name: str, results: str = "results", threads: int | None = None,
         unavailable: dict[str, str] | None = None):
    """Load a profile and build the units that can be planned now: ``(profile, units, root, pending)``.

    ``pending`` says what a later round adds (the extra seeds and the chapters wait for the headline runs);
    ``unavailable`` units (name -> key; failed or blocked in this run) are left out of choices and chapters.
    """
    profile = load_profile(profile_name)
    root = project_root()
    planner = Planner(profile, root, results, threads, unavailable=unavailable)
    return profile, planner.build(), root, planner.pending


def recorded_unit_seconds(timing_path: Path) -> dict[str, float]:
    """Seconds per unit name recorded by earlier runs of the profile (``timings.json``), for the ETA."""
    if not timing_path.is_file():
        return {}
    recorded = json.loads(timing_path.read_text())
    return {**recorded.get("units", {}), **recorded.get("all_units", {})}


def command_run(args) -> int:
    """Run (or resume) every unit of the profile, round after round, then build the book (``--dry-run``: show it)."""
    profile, units, root, pending = plan(args.profile, args.results, args.threads)
    jobs = args.jobs or profile.jobs
    at_a_time = f"{jobs} at a time" if args.engine == "local" else f"at most {jobs} at a time (cluster CPUs allowing)"
    print(f"profile {profile.name}: {len(units)} notebooks planned, {at_a_time}, engine {args.engine}; "
          f"results in {Path(args.results) / profile.name}", flush=True)
    if args.dry_run:
        return dry_run.show_plan(args, profile, units, root, pending)
    preflight.checked_plan(profile, units)
    with lock.holding(root / args.results / profile.name):
        return run_rounds(args, profile, units, root, pending, jobs)


def run_rounds(args, profile, units, root: Path, pending: list[str], jobs: int) -> int:
    """Run the plan round after round (the later rounds are planned as the earlier ones finish), then the book."""
    started = time.perf_counter()
    results = root / args.results / profile.name
    timing_path = results / "timings.json"
    history = recorded_unit_seconds(timing_path)
    seconds, executed, skipped, peak, failures, blocked = {}, [], set(), 0, {}, {}
    while True:
        outcome = scheduler.run_units(units, root, jobs=jobs, engine=args.engine, max_units=args.max_units,
                                      ray_address=args.ray_address, progress=not args.quiet,
                                      keep_checkpoints=args.keep_checkpoints, history=history | seconds,
                                      known_failures=failures)
        seconds |= outcome.seconds
        executed += outcome.executed
        skipped |= set(outcome.skipped) - set(executed)
        peak = max(peak, outcome.peak_rss_bytes)
        failures |= outcome.failed
        blocked |= {name: units[name].key for name in outcome.blocked}
        failed_units.write_failures(results, failures, blocked, units)
        accounted = len(outcome.executed) + len(outcome.skipped) + len(outcome.failed) + len(outcome.blocked)
        finished = accounted == len(units)
        if outcome.interrupted or not finished or not pending:
            break
        # a failure costs only its dependants: the next round is planned without the failed and blocked units
        profile, next_units, root, pending = plan(args.profile, args.results, args.threads,
                                                  unavailable=failed_units.left_out_units(failures, blocked))
        finished_here = set(outcome.executed) | set(outcome.skipped)
        moved = [name for name in finished_here if name in next_units and next_units[name].key != units[name].key]
        if moved:
            raise UserError(f"the code or the profile changed while the study ran: {len(moved)} finished units "
                            f"now have new keys ({', '.join(moved[:3])}...); run the same command again to go on "
                            "with the code as it is now")
        if set(next_units) == set(units):
            if failures:  # what is left waits on failed units
                break
            raise RuntimeError(f"the plan cannot grow past this round: {pending}")
        added = sorted(set(next_units) - set(units))
        print(f"next round: {len(added)} more notebooks ({', '.join(added[:4])}...)", flush=True)
        units = next_units
    wall = time.perf_counter() - started
    print(f"executed {len(executed)}, skipped (already complete) {len(skipped)}, failed {len(failures)}, "
          f"blocked {len(blocked)} in {wall:.0f}s", flush=True)
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(timing_path, {"wall_seconds": wall, "peak_rss_bytes": peak, "units": seconds,
                                    "all_units": history | seconds})
    print(f"peak memory (runner + kernels): {peak / 2**30:.2f} GiB", flush=True)
    if outcome.interrupted:
        done = sum(unit.complete(root) for unit in units.values())
        print(f"interrupted: {done} units finished, {len(units) - done} will rerun (the {len(outcome.interrupted)} "
              f"running ones among them); run the same command to resume", file=sys.stderr, flush=True)
        return 130
    built = finish(args, profile, units, root, finished, pending, failed_units.left_out_units(failures, blocked))
    return failed_units.report_failures(failures, units) or built


def finish(args, profile, units, root: Path, finished: bool, pending: list[str], left_out: dict[str, str]) -> int:
    """After the last round: build the book from what finished, or say why not."""
    if not finished:
        print("stopped before the end (--max-units); run again to resume", flush=True)
        return 0
    if pending:
        print(f"book not built: {pending[0]}", flush=True)
        return 0
    if not args.no_book:
        return command_book(args, profile=profile, units=units, root=root, left_out=left_out)
    return 0


def command_book(args, profile=None, units=None, root=None, left_out: dict[str, str] | None = None) -> int:
    """Build the book from the executed notebooks of a profile (``left_out``: units of this run that failed
    or were blocked; the book names them)."""
    left_out = left_out or {}
    pending = []
    if profile is None:
        profile, units, root, pending = plan(args.profile, args.results, args.threads)
    missing = [u.name for u in units.values() if not u.complete(root) and left_out.get(u.name) != u.key] + pending
    if missing:
        raise UserError(f"cannot build the book: {len(missing)} units have not run ({missing[:5]}...); "
                        f"run `ocular-study run --profile {profile.name}` first")
    started = time.perf_counter()
    toc = book.assemble(units, root, profile, failures_file=root / args.results / profile.name / failed_units.FAILURES)
    html = book.build(root, toc, book.html_folder(root, profile.name), strict=not args.no_strict)
    index = html / "index.html"
    print(f"book built in {time.perf_counter() - started:.0f}s: {index}\nopen {index.resolve().as_uri()}", flush=True)
    return 0


def command_publish(args) -> int:
    """Push an already built book to a ``gh-pages`` branch with ghp-import (for people without GitHub Actions)."""
    from ghp_import import GhpError, ghp_import

    profile = load_profile(args.profile)
    html = book.html_folder(project_root(), profile.name)
    if not (html / "index.html").is_file():
        raise UserError(f"no built book at {html}; run `ocular-study run --profile {profile.name}` (or "
                        f"`ocular-study book --profile {profile.name}`) first")
    try:
        ghp_import(str(html), mesg=args.message or f"Publish the {profile.name} book", branch=args.branch,
                   remote=args.remote, push=not args.no_push, nojekyll=True)
    except GhpError as error:
        raise UserError(f"ghp-import failed: {error}") from error
    where = f"pushed to {args.remote}/{args.branch}" if not args.no_push else f"committed to branch {args.branch}"
    print(f"book {html} {where}; GitHub Pages serves it once the repository's Pages source is that branch")
    return 0


def command_status(args) -> int:
    """Print each unit and whether it is complete, the plan's price and the results folder's size."""
    profile, units, root, pending = plan(args.profile, args.results, args.threads)
    print(f"profile {profile.name}: {len(units)} notebooks planned; results in {Path(args.results) / profile.name}")
    return dry_run.show_plan(args, profile, units, root, pending)


def command_clean(args) -> int:
    """Remove what no unit of the plan needs: stale run folders, finished units' checkpoints, the book."""
    profile, units, root, pending = plan(args.profile, args.results)
    results = root / args.results / profile.name
    html = None if args.keep_book else book.html_folder(root, profile.name)
    if pending:
        print(f"the plan is not complete yet ({pending[0]}); folders of its later rounds do not exist yet and "
              "are not at risk", flush=True)
    with lock.holding(results, "clean"):
        report = cleanup.clean(units, root, results, html)
    stale = sum(1 for p in report.removed if p.parent.parent == results / "runs")
    checkpoints = sum(1 for p in report.removed if p.name == "checkpoints")
    print(f"removed {stale} stale run folders, {checkpoints} checkpoint folders of finished units"
          f"{'' if html is None or html not in report.removed else ' and the built book'}; "
          f"{cleanup.human(report.before)} -> {cleanup.human(report.after)}")
    return 0


def command_export(args) -> int:
    """Write the phone kit: the completed routes' .pte/.onnx files and a manifest (ocular_utils.deployment.kit)."""
    from ..deployment.kit import write_phone_kit

    profile, units, root, _ = plan(args.profile, args.results)
    routes = [u for u in units.values() if u.kind == "quantize"]
    missing = [u.name for u in routes if not u.complete(root)]
    if not routes or missing:
        raise UserError(f"the phone kit needs the profile's quantization routes complete "
                        f"({len(missing)} of {len(routes)} missing, e.g. {missing[:2]}); run the study first")
    out = root / (args.out or f"exports/{profile.name}")
    latency = [u.run_dir for u in units.values() if u.kind == "latency" and u.complete(root)]
    manifest = write_phone_kit([u.run_dir for u in routes], out, coreml=False if args.no_coreml else None,
                               latency_dir=latency[0] if latency else None)
    coreml = json.loads(manifest.read_text())["coreml"]
    print(f"phone kit: {len(list(out.glob('*.pte')))} .pte, {len(list(out.glob('*.onnx')))} .onnx and "
          f"{len(list(out.glob('*.mlpackage')))} Core ML packages (Core ML {coreml}); manifest {manifest}")
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
    from ..core.environment import resolve_precision
    from ..data.prepare import prepare_data
    from ..training.recipes import BaseConfig, train_base_model
    from .session import run_prelude

    profile, units, root, _ = plan(args.profile, args.results, args.threads)
    name = "base" if args.target == "base" else f"distill/{args.student}-{args.loss}"
    if name not in units:
        raise UserError(f"profile {profile.name} has no unit {name!r} (units: {sorted(units)})")
    unit = units[name]
    params = unit.params
    settings, device = run_prelude(params, distributed.init_from_env)
    if not distributed.is_main():  # rank 0 generates and caches the data first; the others then read it
        distributed.barrier()
    data = prepare_data(params["data"], progress=distributed.is_main())
    if distributed.is_main():
        distributed.barrier()
    run_dir = root / unit.run_dir
    precision = resolve_precision(settings.precision, device)
    if args.target == "base":
        train_base_model(data, run_dir, BaseConfig.from_dict(params["base"]), device=device, seed=settings.seed,
                         progress="bar", precision=precision)
    else:
        train_student(data, root / params["teacher_dir"], run_dir, params["student"], params["loss"],
                      DistillationConfig.from_dict(params["distillation"]), params["budget"], device=device,
                      seed=settings.seed, progress="bar", precision=precision)
    if distributed.is_main():
        print(f"trained {name} in {run_dir}; `ocular-study run --profile {profile.name}` now evaluates it")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    top = OneLineParser(prog="ocular-study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = top.add_subparsers(dest="command", required=True)
    debug = OneLineParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")

    def common(p):
        p.add_argument("--profile", default="default", help="profile name or path to a .yml (default: default)")
        p.add_argument("--results", default="results",
                       help="results folder, relative to the project (default: results)")
        p.add_argument("--threads", type=at_least_one, default=None,
                       help="torch threads per notebook (default: the profile's)")

    run = sub.add_parser("run", parents=[debug],
                        help="run (or resume) a profile's notebooks, then build its book")
    common(run)
    run.add_argument("--jobs", type=at_least_one, default=None, help="notebooks at once (default: the profile's)")
    run.add_argument("--engine", choices=["local", "ray"], default="local", help="where units run")
    run.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local cluster)")
    run.add_argument("--max-units", type=at_least_one, default=None, help="stop after starting this many units")
    run.add_argument("--no-book", action="store_true", help="do not build the book")
    run.add_argument("--no-strict", action="store_true", help="build the book without -W")
    run.add_argument("--dry-run", action="store_true",
                     help="list the units and their state, and price the whole plan; run nothing")
    run.add_argument("--images-per-second", type=float, default=None,
                     help="with --dry-run: price every training image at this rate (default: the rates recorded "
                          "by the results folder's finished runs)")
    run.add_argument("--train-images", type=int, default=None,
                     help="with --dry-run: the training set's size, when no run has recorded it yet")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep each finished run's training checkpoints (default: keep only the saved model)")
    run.set_defaults(func=command_run)
    bk = sub.add_parser("book", parents=[debug],
                        help="build the book from a profile's executed notebooks")
    common(bk)
    bk.add_argument("--no-strict", action="store_true", help="build without -W")
    bk.set_defaults(func=command_book)
    st = sub.add_parser("status", parents=[debug],
                        help="list a profile's units and which are complete")
    common(st)
    st.set_defaults(func=command_status, train_images=None, images_per_second=None)
    cl = sub.add_parser("clean", parents=[debug],
                        help="remove run folders no unit of the plan owns, finished units' checkpoints and the book")
    common(cl)
    cl.add_argument("--keep-book", action="store_true", help="keep the built book")
    cl.set_defaults(func=command_clean)
    ex = sub.add_parser("export", parents=[debug],
                        help="write the phone kit: the routes' .pte/.onnx/Core ML files and a manifest")
    common(ex)
    ex.add_argument("--out", default=None, help="folder, relative to the project (default: exports/<profile>)")
    ex.add_argument("--no-coreml", action="store_true", help="skip the Core ML packages (they need coremltools)")
    ex.set_defaults(func=command_export)
    pb = sub.add_parser("publish", parents=[debug],
                        help="push the built book (_build/html) to a gh-pages branch with ghp-import")
    pb.add_argument("--profile", default="default", help="whose built book (default: default)")
    pb.add_argument("--branch", default="gh-pages", help="branch to write (default: gh-pages)")
    pb.add_argument("--remote", default="origin", help="remote to push to (default: origin)")
    pb.add_argument("--message", default=None, help="commit message")
    pb.add_argument("--no-push", action="store_true", help="commit to the branch only; do not push")
    pb.set_defaults(func=command_publish)
    pr = sub.add_parser("profiles", parents=[debug],
                        help="list the shipped profiles, or show one with every default filled in")
    pr.add_argument("--show", metavar="PROFILE", default=None, help="profile name or .yml path to print resolved")
    pr.set_defaults(func=command_profiles)
    tr = sub.add_parser("train", parents=[debug],
                        help="train the base model or a student (use under torchrun for DDP)")
    common(tr)
    tr.add_argument("--target", choices=["base", "student"], default="base")
    tr.add_argument("--student", default=None, help="student network (with --target student)")
    tr.add_argument("--loss", default="logit", help="distillation loss (with --target student)")
    tr.set_defaults(func=command_train)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocular-study``: user errors print one line and exit 2 (``--debug``: the traceback)."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except preflight.PlanProblems as error:
        for problem in error.problems:
            print(f"ocular-study: error: {problem}", file=sys.stderr)
        return 2
    except book.BookBuildFailed as error:
        if args.debug:
            raise
        print(f"ocular-study: book build failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted; finished units are kept: run the same command to resume", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"ocular-study: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
