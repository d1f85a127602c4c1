"""The runner under failure: kills, interrupts, bad arguments, two runs at once, failed units."""
import json
import os
from pathlib import Path

import nbformat
import pytest

from ocular_utils.core.records import is_complete
from ocular_utils.runner import scheduler
from ocular_utils.runner.plan import Unit

RECORD_CELL = """\
from ocular_utils.core.records import Record, write_record
write_record(run_dir, Record("data", {}))
"""
KILL_CELL = """\
import os, signal
if kill:
    os.kill(os.getpid(), signal.SIGKILL)  # the worst moment: the record is written, the last cells are not run
"""


def _notebook(path):
    parameters = nbformat.v4.new_code_cell('run_dir = "x"\nkill = False')
    parameters.metadata["tags"] = ["parameters"]
    cells = [parameters, nbformat.v4.new_code_cell(RECORD_CELL), nbformat.v4.new_code_cell(KILL_CELL),
             nbformat.v4.new_code_cell("print('the last cell ran')")]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                                                                              "display_name": "Python 3",
                                                                              "language": "python"}})
    nbformat.write(notebook, path)
    return path


def test_a_unit_killed_between_its_record_and_its_last_cell_is_not_done_and_reruns(tmp_path):
    notebook = _notebook(tmp_path / "unit.ipynb")
    run_dir = tmp_path / "runs" / "data" / "unit-0"
    unit = Unit("data", "data", notebook, {"run_dir": str(run_dir), "kill": True}, key="k", run_dir=run_dir)
    with pytest.raises(Exception, match="(?i)dead|died|kernel"):
        scheduler.execute_unit(unit, tmp_path)
    assert (run_dir / "record.json").is_file(), "the record was written before the kill"
    assert not unit.complete(tmp_path) and not is_complete(run_dir), "a record alone does not make a unit done"
    unit.params["kill"] = False  # the rerun: every cell runs, then the unit is marked done
    scheduler.execute_unit(unit, tmp_path)
    assert unit.complete(tmp_path)
    assert json.loads((run_dir / "done.json").read_text())["key"] == "k"
    executed = nbformat.read(run_dir / "notebook.ipynb", 4)
    assert "the last cell ran" in executed.cells[-1].outputs[0]["text"]


def _timed_unit(unit, root, keep_checkpoints=False):
    """A stand-in unit for Ray: sleeps, and leaves its start and end time in ``root``."""
    import time
    from pathlib import Path

    started = time.time()
    time.sleep(1.5)
    Path(root, f"{unit.name}.span").write_text(f"{started} {time.time()}")
    return 1.5


@pytest.mark.slow
def test_ray_runs_no_more_units_at_once_than_jobs(tmp_path):
    pytest.importorskip("ray")
    import ray

    units = {name: Unit(name, "data", tmp_path / "x.ipynb", {}, run_dir=tmp_path / name) for name in ("a", "b")}
    try:
        outcome = scheduler.run_units(units, tmp_path, jobs=1, engine="ray", progress=False, execute=_timed_unit)
    finally:
        ray.shutdown()
    assert sorted(outcome.executed) == ["a", "b"]
    (a0, a1), (b0, b1) = ([float(v) for v in (tmp_path / f"{n}.span").read_text().split()] for n in ("a", "b"))
    assert a1 <= b0 or b1 <= a0, "with --jobs 1 the two units overlapped on Ray"


def test_a_second_run_on_the_same_results_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    import socket

    from ocular_utils.runner import cli, lock

    results = tmp_path / "results"
    with lock.holding(results / "smoke") as held:  # this test process plays the first run
        assert cli.main(["run", "--profile", "smoke", "--results", str(results), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another run" in err[0] and str(os.getpid()) in err[0]
        assert cli.main(["clean", "--profile", "smoke", "--results", str(results)]) == 2
        assert "in use by another run" in capsys.readouterr().err
        assert held.is_file()
    assert not held.exists(), "the holder removes its lock on exit"
    held.write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname(), "since": "earlier"}))
    with lock.holding(results / "smoke"):
        assert "taking over the lock of a run that is gone" in capsys.readouterr().out
        assert json.loads(held.read_text())["pid"] == os.getpid()
    held.write_text(json.dumps({"pid": 1, "host": "another-host", "since": "earlier"}))
    with pytest.raises(lock.FolderLocked, match="another-host"):
        with lock.holding(results / "smoke"):
            pass


def _slow_unit(tmp_path, name, ignore_interrupts=False):
    cell = "import signal, time\n" + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if ignore_interrupts else "") \
        + "open(started, 'w').close()\ntime.sleep(120)"
    parameters = nbformat.v4.new_code_cell('run_dir = "x"\nstarted = "x"')
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(cell)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, tmp_path / f"{name}.ipynb")
    run_dir = tmp_path / "runs" / name
    return Unit(name, "data", tmp_path / f"{name}.ipynb",
                {"run_dir": str(run_dir), "started": str(tmp_path / f"{name}.started")}, run_dir=run_dir)


RUNNER = """
import json, signal, sys, time
from pathlib import Path
import psutil
# as in a terminal's foreground: a runner started in the background (nohup, CI) inherits SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
from ocular_utils.runner import scheduler
from ocular_utils.runner.plan import Unit

root, run_dir, notebook, flag = map(Path, sys.argv[1:5])
unit = Unit("slow", "data", notebook, {"run_dir": str(run_dir), "started": str(flag)}, run_dir=run_dir)
started = time.perf_counter()
outcome = scheduler.run_units({"slow": unit}, root, progress=False)
kernels = [c.pid for c in psutil.Process().children(recursive=True)
           if c.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(c.cmdline())]
print(json.dumps({"interrupted": outcome.interrupted, "executed": outcome.executed, "complete": unit.complete(root),
                  "kernels": kernels, "kernel_dir": scheduler.kernel_dir().exists(),
                  "seconds": time.perf_counter() - started}))
"""


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_interrupts_the_running_kernels_and_leaves_nothing_behind(tmp_path, presses):
    """A runner process (its own, with Python's default SIGINT handling) gets Ctrl-C while a notebook runs."""
    import signal
    import subprocess
    import sys
    import time

    unit = _slow_unit(tmp_path, "slow", ignore_interrupts=presses == 2)
    flag = Path(unit.params["started"])
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path), str(unit.run_dir), str(unit.notebook),
                               str(flag)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not flag.exists() and runner.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert flag.exists(), "the notebook never started: " + (runner.stderr.read() if runner.poll() is not None else "")
    for _ in range(presses):
        runner.send_signal(signal.SIGINT)
        time.sleep(1.0)
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err[-2000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["interrupted"] == ["slow"] and not seen["executed"] and not seen["complete"]
    assert not seen["kernels"], "no kernel outlives the runner's interrupt"
    assert not seen["kernel_dir"], "the kernels' socket files are removed"
    assert "Traceback" not in err
    if presses == 2:  # a kernel that ignores SIGINT is killed at the second press, not after the grace period
        assert seen["seconds"] < 60


def test_an_interrupted_run_says_how_to_resume_without_a_traceback(tmp_path, monkeypatch, capsys):
    from ocular_utils.runner import cli

    def interrupted(units, root, **options):
        return scheduler.Outcome(executed=[sorted(units)[0]], interrupted=[sorted(units)[1]])

    monkeypatch.setattr(scheduler, "run_units", interrupted)
    assert cli.main(["run", "--profile", "smoke", "--results", str(tmp_path / "results"), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: 0 units finished") and "run the same command" in err[0]
    assert not (tmp_path / "results" / "smoke" / ".study.lock").exists()


def test_a_failing_cell_is_reported_whole_and_a_user_error_ends_as_one_line(tmp_path, monkeypatch, capsys):
    from ocular_utils.runner import cli

    class CellError(Exception):  # what papermill raises: the failing cell's exception type and message
        ename, evalue = "DatasetError", "data root /nowhere does not exist; expected a folder of the VISOB layout " * 20

    failure = scheduler.describe_failure(CellError("Traceback ... (papermill's own text, cut mid-line)"))
    assert failure.user_error and failure.error_type == "DatasetError" and failure.message.endswith("layout")
    assert not scheduler.describe_failure(RuntimeError("Kernel died")).user_error

    def failing(units, root, **options):
        return scheduler.Outcome(failed={"data": failure}, blocked=sorted(set(units) - {"data"}))

    monkeypatch.setattr(scheduler, "run_units", failing)
    assert cli.main(["run", "--profile", "smoke", "--results", str(tmp_path / "results"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ocular-study: error: data: DatasetError: data root /nowhere")
    assert "executed notebook:" in err[0]


def test_a_failed_book_build_is_one_line_naming_the_page_and_the_log_is_kept(tmp_path, monkeypatch, capsys):
    import subprocess

    from ocular_utils.runner import book, cli

    sphinx_log = ("Running Sphinx v7\nreading sources... [ 50%] book/_generated/smoke/intro\n"
                  f"{tmp_path}/book/_generated/smoke/intro.md:12: WARNING: Glue reference 'base_eer' not found\n"
                  f"{tmp_path}/book/methods.md:3: WARNING: undefined label: 'fig-x'\n"
                  + "Traceback (most recent call last):\n  ...\n" * 50)

    def failing_jupyter_book(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, sphinx_log, "")

    monkeypatch.setattr(book.subprocess, "run", failing_jupyter_book)
    html = tmp_path / "_build" / "html"
    with pytest.raises(book.BookBuildFailed) as failed:
        book.build(tmp_path, tmp_path / "toc.yml", html)
    assert failed.value.problem == ("book/_generated/smoke/intro.md:12: WARNING: Glue reference 'base_eer' "
                                    "not found")
    assert failed.value.log.read_text().startswith("Running Sphinx")

    monkeypatch.setattr(cli, "command_book", lambda args, **kw: book.build(tmp_path, tmp_path / "toc.yml", html))
    assert cli.main(["book", "--profile", "smoke"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ocular-study: book build failed: book/_generated/smoke/intro.md:12")
    assert "book-build.log" in err[0]


def _profile_file(tmp_path, **changes):
    """The smoke profile with sections changed (merged one level deep), written to a file."""
    import yaml

    from ocular_utils.runner.profiles import read_profile_file

    values = read_profile_file("smoke")
    for section, value in changes.items():
        values[section] = (values.get(section) or {}) | value if isinstance(value, dict) else value
    path = tmp_path / "profile.yml"
    path.write_text(yaml.safe_dump(values | {"name": "checked"}))
    return str(path)


def test_a_missing_data_root_stops_the_run_before_any_unit_with_one_line(tmp_path, capsys):
    from ocular_utils.runner import cli

    profile = _profile_file(tmp_path, data={"root": str(tmp_path / "nowhere"), "synthetic": None})
    for extra in ([], ["--dry-run"]):
        assert cli.main(["run", "--profile", profile, "--results", str(tmp_path / "results"), "--quiet"] + extra) == 2
        shown = capsys.readouterr()
        err = shown.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ocular-study: error: data (root ") and "nowhere" in err[0]
        # a dry run still shows the plan and its price (a plan is priced before its data is there)
        assert ("planned training, every round" in shown.out) == bool(extra)
    assert not (tmp_path / "results" / "checked" / "runs").exists(), "no unit started"


def test_every_problem_of_a_plan_is_listed_at_once_before_anything_runs(tmp_path, visob_root, capsys):
    import shutil

    from ocular_utils.runner import cli

    root = tmp_path / "visob"
    shutil.copytree(visob_root, root)
    broken = sorted(root.rglob("*.png"))[0]
    broken.write_bytes(b"this is not an image")
    profile = _profile_file(tmp_path, data={"root": str(root), "synthetic": None},
                            quantization={"calibration_images": 100_000},
                            base={"train": {"epochs": 1, "batch_size": 50_000, "warmup_epochs": 0.0}},
                            pruning={"compressions": [4, 100, 5000]})
    assert cli.main(["run", "--profile", profile, "--results", str(tmp_path / "results"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("ocular-study: error: ")]
    warnings = [line for line in err if line.startswith("ocular-study: warning: ")]
    assert len(errors) + len(warnings) == len(err)
    assert any("1 files are not readable images" in e and broken.name in e for e in errors)
    assert any(e.startswith("ocular-study: error: quantization.calibration_images: 100000 exceeds") for e in errors)
    assert any(e.startswith("ocular-study: error: base.train.batch_size: 50000 exceeds") for e in errors)
    assert any("at 5000x" in e and "impossible" in e for e in errors), "an impossible ratio is refused"
    assert any("at 100x is beyond 64x" in w for w in warnings), "a ratio where models collapse is warned about"
    assert not (tmp_path / "results" / "checked" / "runs").exists(), "no unit started"


def test_socket_folders_of_a_killed_runner_are_removed_by_the_next_run(tmp_path):
    dead = scheduler.kernel_dir(2**22 + 11)  # a pid no process has
    dead.mkdir(exist_ok=True)
    (dead / "0123456789ab-shell").write_text("")
    scheduler.run_units({}, tmp_path, progress=False)
    assert not dead.exists()


def _finished_by_hand(unit, root, keep_checkpoints=False):
    """A stand-in unit: a record good enough for the planner's choices, then the done marker."""
    from ocular_utils.core.records import Record, mark_done, write_record

    if unit.name == "prune/global_gradient-4x":
        raise RuntimeError("out of memory (on purpose)")
    kind = unit.kind if unit.kind != "chapter" else "chapter"
    write_record(unit.run_dir, Record(kind, unit.params, metrics={"validation_eer": 0.2}, training_images=160))
    mark_done(unit.run_dir, unit.key)
    return 0.1


def test_a_failed_unit_costs_only_its_dependants_and_the_pages_name_it(tmp_path, monkeypatch, capsys):
    import functools

    from ocular_utils.runner import cli

    real = scheduler.run_units
    monkeypatch.setattr(scheduler, "run_units", functools.partial(real, execute=_finished_by_hand))
    results = tmp_path / "results"
    assert cli.main(["run", "--profile", "smoke", "--results", str(results), "--quiet", "--no-book"]) == 1
    out, err = capsys.readouterr()
    assert "FAILED prune/global_gradient-4x: RuntimeError: out of memory (on purpose)" in err
    failures = json.loads((results / "smoke" / "failures.json").read_text())
    assert list(failures["failed"]) == ["prune/global_gradient-4x"]
    # every later round was planned and run without it: the chapters ran, and they name what they lack
    first = cli.plan("smoke", str(results))[1]
    profile, units, root, pending = cli.plan("smoke", str(results), unavailable={
        name: first[name].key for name in ("prune/global_gradient-4x", "quantize/int8-global_gradient-4x")
        if name in first})
    chapters = [u for u in units.values() if u.kind == "chapter"]
    assert not pending and chapters and all(u.complete(root) for u in chapters)
    assert all("prune/global_gradient-4x" in u.missing for u in chapters if u.name != "distillation_results")
    assert all(u.complete(root) for u in units.values() if u.name != "prune/global_gradient-4x"), \
        "every unit that does not depend on the failure finished"
    assert not any("global_gradient" in run for u in chapters for run in u.params["runs"])


def test_the_intro_and_a_page_that_lacks_runs_say_what_failed(tmp_path):
    from ocular_utils.runner import book

    failed = {"prune/global_gradient-4x": {"error": "RuntimeError: out of memory | twice", "user_error": False}}
    block = book.failures_block(failed, ["quantize/int8-global-gradient-4x"])
    assert block.startswith(":::{warning} Not in this build: 2 units") and "out of memory / twice" in block
    assert "| `quantize/int8-global-gradient-4x` | not run: it depends on a failed unit |" in block
    source = tmp_path / "chapter.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Pruning results\nText"),
                                                   nbformat.v4.new_code_cell("1")]), source)
    book.prepare_page(source, tmp_path / "page.ipynb", None,
                      book.failures_block(failed, [], ["prune/global_gradient-4x"]))
    cells = json.loads((tmp_path / "page.ipynb").read_text())["cells"]
    assert "".join(cells[0]["source"]).startswith("# Pruning results")
    assert "".join(cells[1]["source"]).startswith(":::{warning} Not in this page: 1 units")


def test_every_user_error_type_of_the_package_is_known_by_name_to_the_runner():
    import importlib
    import pkgutil

    import ocular_utils

    for info in pkgutil.walk_packages(ocular_utils.__path__, "ocular_utils."):
        if not info.name.endswith("__main__"):  # running it would start the command line
            importlib.import_module(info.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    ours = {c.__name__ for base in scheduler.USER_ERROR_BASES for c in subclasses(base)
            if c.__module__.startswith("ocular_utils.")}
    assert ours and ours <= scheduler.USER_ERROR_TYPES, ours - scheduler.USER_ERROR_TYPES
