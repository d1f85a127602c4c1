"""The runner without notebooks: typed settings, the scheduler's rules, book assembly, notebook parameters."""
import ast
import dataclasses
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import papermill
import pytest
import yaml

from ocular_utils.core.config import Settings
from ocular_utils.core.environment import RUN_SETTINGS
from ocular_utils.core.paths import NOTEBOOKS, PACKAGE_DIR, declared_parameters, notebook_path, project_root
from ocular_utils.runner import book, scheduler, session
from ocular_utils.runner.plan import Planner, Unit
from ocular_utils.runner.profiles import Profile, available_profiles, load_profile, read_profile_file

ROOT = project_root()


def _settings_classes():
    from ocular_utils.core.environment import RunSettings
    from ocular_utils.data.synthetic import SyntheticConfig

    found, queue = {"SyntheticConfig": SyntheticConfig}, [Profile, RunSettings]
    while queue:
        cls = queue.pop()
        found[cls.__name__] = cls
        for field in dataclasses.fields(cls):
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            if isinstance(default, Settings) and type(default).__name__ not in found:
                queue.append(type(default))
    return found


def test_sections_merge_into_their_defaults_and_reject_unknown_keys():
    profile = Profile.from_dict({"name": "x", "pruning": {"finetune": {"epochs": 30}}, "base": {"train": {"lr": 0.1}}})
    assert profile.pruning.finetune.epochs == 30 and profile.pruning.finetune.lr == Profile().pruning.finetune.lr
    assert profile.base.train.lr == 0.1 and profile.base.train.epochs == Profile().base.train.epochs
    with pytest.raises(ValueError, match=r"profile.distillation has unknown keys \['temp'\]; known: \['alpha'"):
        Profile.from_dict({"distillation": {"temp": 2}}, "profile")
    with pytest.raises(ValueError, match="unknown compression method 'magnitude'"):
        Profile.from_dict({"pruning": {"methods": ["magnitude"]}})
    assert profile.to_dict()["pruning"]["finetune"]["epochs"] == 30, "notebooks receive plain dicts"


def test_defaults_are_written_once():
    """Profiles write only overrides; notebooks hold no settings values; no function repeats a settings default."""
    from ocular_utils.data.synthetic import SyntheticConfig

    defaults = Profile().to_dict()
    defaults["data"]["synthetic"] = dataclasses.asdict(SyntheticConfig())

    def restated(given, default, where):
        for key, value in given.items():
            if isinstance(value, dict) and isinstance(default.get(key), dict):
                yield from restated(value, default[key], f"{where}.{key}")
            elif key in default and default[key] == value and key != "name":
                yield f"{where}.{key} = {value!r}"

    for name in available_profiles():
        assert not list(restated(read_profile_file(name), defaults, name)), f"{name}.yml restates defaults"
    # every literal default of a settings field, by name
    literal = {}
    for cls in _settings_classes().values():
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING and field.default not in (None, True, False, 0, 1, ""):
                literal.setdefault(field.name, set()).add(repr(field.default))
    repeated = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args[len(node.args.args) - len(node.args.defaults):] + node.args.kwonlyargs
                values = node.args.defaults + [d for d in node.args.kw_defaults]
                for arg, value in zip(args, values):
                    if isinstance(value, ast.Constant) and repr(value.value) in literal.get(arg.arg, ()):
                        repeated.append(f"{path.relative_to(PACKAGE_DIR)}:{node.name}({arg.arg}={value.value!r})")
    assert not repeated, f"settings defaults written again as argument defaults: {repeated}"
    for kind in RUN_NOTEBOOKS:
        for name, value in _parameters_cell(kind).items():
            if name in session.SECTIONS or name == "data":
                assert value == {}, f"{kind} notebook: {name} must be {{}} (the section's defaults)"
            if name in RUN_SETTINGS:
                assert value is None, f"{kind} notebook: {name} must be None (RunSettings' default)"


RUN_NOTEBOOKS = ("data", "base", "prune", "distill", "latency", "quantize")


def _parameters_cell(kind):
    notebook = json.loads((ROOT / "notebooks" / NOTEBOOKS[kind]).read_text())
    cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace = {}
    exec("".join(cell["source"]), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def test_notebook_parameters_are_declared_once_and_read_from_the_notebook(tmp_path):
    planner = Planner(load_profile("smoke"), ROOT)
    units = planner.build().values()
    for kind in RUN_NOTEBOOKS:
        declared = session.declared_parameters(kind)
        assert set(declared) == set(_parameters_cell(kind)) >= set(session.RUN_PARAMETERS), kind
        assert declared == tuple(papermill.inspect_notebook(str(notebook_path(kind)))), kind  # the library's reading
    untagged = tmp_path / "untagged.ipynb"
    untagged.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1"}]}))
    with pytest.raises(ValueError, match="untagged.ipynb has no cell tagged 'parameters'"):
        declared_parameters(untagged)
        for unit in (u for u in units if u.kind == kind):
            assert set(unit.params) <= set(declared), f"{unit.name} passes parameters its notebook lacks"
    with pytest.raises(ValueError, match=r"passes \['stray'\], which prune.ipynb's parameters cell does not declare"):
        planner.add("prune/odd", "prune", {"method": "random", "stray": 1})
    with pytest.raises(NameError, match=r"parameters \['method'"):
        session.start_run("prune", {name: None for name in session.declared_parameters("prune") if name != "method"})


def _unit(name, deps=(), exclusive=False):
    return Unit(name, "prune", Path("x.ipynb"), {}, list(deps), run_dir=Path("runs") / name, exclusive=exclusive)


class FakeExecutor:
    """Stands in for papermill: records start/end times, fails named units, writes no files."""

    def __init__(self, fail=(), seconds=0.05):
        self.fail, self.seconds, self.spans, self.lock = set(fail), seconds, {}, threading.Lock()

    def __call__(self, unit, root, keep_checkpoints):
        start = time.perf_counter()
        time.sleep(self.seconds)
        with self.lock:
            self.spans[unit.name] = (start, time.perf_counter())
        if unit.name in self.fail:
            raise RuntimeError(f"{unit.name} failed on purpose")
        return self.seconds


def test_scheduler_orders_blocks_and_isolates(tmp_path):
    units = {u.name: u for u in [_unit("a"), _unit("b", ["a"]), _unit("c", ["a"]), _unit("d", ["b"]),
                                 _unit("e", ["d"]), _unit("f", ["c"]), _unit("lat", ["c"], exclusive=True),
                                 _unit("g", ["c"])]}
    fake = FakeExecutor(fail={"b"})
    outcome = scheduler.run_units(units, tmp_path, jobs=3, progress=False, execute=fake)
    assert set(outcome.failed) == {"b"} and set(outcome.blocked) == {"d", "e"}, "a failure blocks its dependants only"
    assert set(outcome.executed) == {"a", "c", "f", "lat", "g"}
    for unit in units.values():
        for dep in unit.deps:
            if unit.name in fake.spans:
                assert fake.spans[dep][1] <= fake.spans[unit.name][0], f"{unit.name} started before {dep} ended"
    lat_start, lat_end = fake.spans["lat"]
    for name, (start, end) in fake.spans.items():
        if name != "lat":
            assert end <= lat_start or start >= lat_end, f"{name} overlapped the exclusive unit"
    overlapping = any(fake.spans[x][0] < fake.spans[y][1] and fake.spans[y][0] < fake.spans[x][1]
                      for x in ("b", "c") for y in ("b", "c") if x != y)
    assert overlapping, "independent units run at the same time with jobs=3"


def test_book_assembly_points_at_executed_notebooks_and_adds_the_appendix(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "_toc.yml").write_text((ROOT / "book" / "_toc.yml").read_text())
    (tmp_path / "book" / "intro.md").write_text((ROOT / "book" / "intro.md").read_text())
    units = {}
    chapters = [Path(c["file"]).name for c in book.toc_entries(yaml.safe_load((ROOT / "book/_toc.yml").read_text()))
                if c["file"].startswith("notebooks/")]
    code = {"cell_type": "code", "execution_count": 1, "outputs": []}
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# One pruning run\ntext"},
                          code | {"metadata": {"tags": ["parameters"]}, "source": "method = None"},
                          code | {"metadata": {"tags": ["injected-parameters"]}, "source": 'method = "random"'},
                          code | {"metadata": {"tags": ["hide-input"]}, "source": "print(method)"}],
                "metadata": {"papermill": {"parameters": {"method": "random", "compression": 8}}},
                "nbformat": 4, "nbformat_minor": 5}
    for name in chapters + ["prune-a"]:
        unit = Unit(name, "prune" if name == "prune-a" else "chapter", Path("x.ipynb"), {}, chapter=None
                    if name == "prune-a" else name, run_dir=Path("results") / name)
        (tmp_path / unit.output).parent.mkdir(parents=True)
        (tmp_path / unit.output).write_text(json.dumps(notebook))
        units[name] = unit
    toc_path = book.assemble(units, tmp_path, Profile(name="unit"))
    toc = yaml.safe_load(toc_path.read_text())
    files = [c["file"] for c in book.toc_entries(toc) if c["file"].startswith("book/_generated/unit/")]
    assert files[:len(chapters)] == [f"book/_generated/unit/{name}" for name in chapters]
    assert toc["parts"][-1]["caption"] == book.APPENDIX_CAPTION
    (index,) = toc["parts"][-1]["chapters"]  # one page listing every run; the run pages are its sections
    page = (tmp_path / index["file"]).with_suffix(".md").read_text()
    assert page.startswith("# Every executed run") and "```{raw} html" in page
    assert 'href=\\"runs/prune-a.html\\"' in page or 'href="runs/prune-a.html"' in page
    assert "not recorded" in page and "_itables_" in page and "https://" not in page.split("```{raw} html")[1][:2000]
    assert "Synthetic data" not in page  # no record says its data were synthetic
    (tmp_path / units["prune-a"].run_dir / "record.json").write_text(json.dumps({"status": "complete",
                                                                                "synthetic": True}))
    labelled = book.runs_index_page([units["prune-a"]], tmp_path)
    assert labelled.index("Synthetic data") < labelled.index("```{raw} html")  # the note heads the runs table
    appendix = tmp_path / index["sections"][0]["file"]
    cells = json.loads(appendix.with_suffix(".ipynb").read_text())["cells"]
    assert cells[0]["source"].startswith("# Run: prune-a")
    # the two parameter cells become one collapsed block of the run's parameters, before the first code cell
    assert [c["cell_type"] for c in cells] == ["markdown", "markdown", "code"]
    assert ":class: dropdown" in cells[1]["source"] and "compression: 8" in cells[1]["source"]
    assert toc["root"] == "book/_generated/unit/intro"  # the intro glues from its sibling chapters
    assert "phone.ipynb::" in (tmp_path / "book/_generated/unit/intro.md").read_text()
    (tmp_path / units[chapters[0]].output).unlink()
    with pytest.raises(FileNotFoundError, match="has no executed notebook"):
        book.assemble(units, tmp_path, Profile(name="unit"))


def test_user_errors_print_one_line_and_exit_2(capsys):
    from ocular_utils.runner import cli

    assert cli.main(["run", "--profile", "no-such-profile", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ocular-study: error: unknown profile 'no-such-profile'")
    with pytest.raises(ValueError, match="no-such-profile"):
        cli.main(["run", "--profile", "no-such-profile", "--dry-run", "--debug"])
    with pytest.raises(SystemExit) as shown:
        cli.main(["publish", "--help"])
    assert shown.value.code == 0 and "gh-pages" in capsys.readouterr().out


def test_dry_run_lists_units_with_their_parameters_and_state(capsys):
    from ocular_utils.runner import cli

    assert cli.main(["run", "--profile", "smoke", "--results", "results-that-do-not-exist", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "to run  base" in out and 'method="layer_weight"' in out and "compression=4" in out and "later" in out


def test_progress_text_estimates_from_recorded_unit_times():
    from ocular_utils.runner.scheduler import estimated_seconds, progress_text

    history = {"prune/random-2x": 100.0, "prune/random-4x": 140.0, "base": 300.0}
    assert estimated_seconds("base", history) == 300.0
    assert estimated_seconds("prune/layer_weight-8x", history) == 140.0  # median of its kind
    assert estimated_seconds("latency", history) is None
    text = progress_text(["base"], ["base", "prune/a", "prune/b", "latency"], history, capacity=2)
    assert text == "base | ETA ~5 min + 1 units of kinds not timed yet"
    assert "ETA unknown" in progress_text([], ["latency"], history, capacity=1)


def test_findings_glue_strings_without_quotes():
    from IPython.core.formatters import DisplayFormatter

    from ocular_utils.report.findings import _plain

    shown, _ = DisplayFormatter().format(_plain("layer_weight 8x"))
    assert shown["text/plain"] == "layer_weight 8x" and shown["text/markdown"] == "layer_weight 8x"
    assert _plain(np.float64(7.5)) == 7.5 and type(_plain(np.float64(7.5))) is float


def test_book_build_leaves_no_page_of_an_earlier_build(tmp_path, monkeypatch):
    html = tmp_path / "_build" / "html"
    html.mkdir(parents=True)
    (html / "a-run-no-longer-in-the-book.html").write_text("stale")

    def fake_jupyter_book(command, **kwargs):
        out = Path(command[command.index("--path-output") + 1]) / "_build" / "html"
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text("new")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(book.subprocess, "run", fake_jupyter_book)
    assert book.build(tmp_path, tmp_path / "toc.yml", html) == html
    assert sorted(p.name for p in html.iterdir()) == ["index.html"]
    other = book.html_folder(tmp_path, "smoke")
    assert book.build(tmp_path, tmp_path / "toc.yml", other) == other == tmp_path / "_build" / "smoke" / "html"
    assert (other / "index.html").is_file() and not (tmp_path / "_build" / "smoke" / "_build").exists()


def test_a_study_whose_code_changes_between_rounds_stops_with_one_clear_line(tmp_path, monkeypatch, capsys):
    """Units of a finished round re-keyed by an edit mid-run: one user error, not a failed plan."""
    from ocular_utils.runner import cli, scheduler

    rounds = []

    def finish_all(units, root, **options):
        rounds.append(set(units))
        return scheduler.Outcome(executed=list(units))

    real_plan = cli.plan

    def plan_then_edit(*args, **options):
        profile, units, root, pending = real_plan(*args, **options)
        if rounds:  # the second planning sees every unit of the first under a new key
            units = {name: dataclasses.replace(unit, key=unit.key + "-edited") for name, unit in units.items()}
        return profile, units, root, pending

    monkeypatch.setattr(scheduler, "run_units", finish_all)
    monkeypatch.setattr(cli, "plan", plan_then_edit)
    assert cli.main(["run", "--profile", "smoke", "--results", str(tmp_path / "results"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(rounds) == 1 and len(err) == 1 and "changed while the study ran" in err[0]


def test_clean_removes_stale_runs_and_finished_checkpoints_and_status_prints_the_size(tmp_path, capsys):
    from ocular_utils.core.paths import project_root
    from ocular_utils.core.records import Record, mark_done, write_record
    from ocular_utils.runner import cli
    from ocular_utils.runner.plan import Planner
    from ocular_utils.runner.profiles import load_profile

    results = tmp_path / "results"
    units = Planner(load_profile("smoke"), project_root(), str(results)).build()
    finished, running = (project_root() / units[name].run_dir for name in ("data", "base"))
    write_record(finished, Record("data", {}))
    mark_done(finished, units["data"].key)
    for folder in (finished, running):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.pt").write_bytes(b"x" * 1000)
    stale = results / "smoke" / "runs" / "prune" / "layer-weight-4x-0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "model.pt").write_bytes(b"x" * 5000)
    assert cli.main(["status", "--profile", "smoke", "--results", str(results)]) == 0
    assert "of which 1 run folders no unit of this plan owns (0.0 MB" in capsys.readouterr().out
    assert cli.main(["clean", "--profile", "smoke", "--results", str(results), "--keep-book"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 stale run folders, 1 checkpoint folders of finished units" in out
    assert not stale.exists() and not (finished / "checkpoints").exists() and (finished / "record.json").is_file()
    assert (running / "checkpoints" / "last.pt").is_file(), "an unfinished training keeps what it resumes from"


def test_a_file_linked_under_two_names_is_counted_once(tmp_path):
    """The folder size counts a hard-linked file once (as du does): a unit's scores at its budget are one file."""
    from ocular_utils.runner.cleanup import folder_bytes

    (tmp_path / "along").mkdir()
    (tmp_path / "along" / "scores-64.npz").write_bytes(b"x" * 1000)
    (tmp_path / "record.json").write_bytes(b"y" * 10)
    assert folder_bytes(tmp_path) == 1010
    os.link(tmp_path / "along" / "scores-64.npz", tmp_path / "scores.npz")
    assert folder_bytes(tmp_path) == 1010 and folder_bytes(tmp_path, tmp_path / "along") == 1010
    assert folder_bytes(tmp_path / "missing") == 0


def test_every_run_starts_with_one_prelude_threads_then_seeds_then_the_device():
    import torch

    from ocular_utils.runner.session import run_prelude

    threads = torch.get_num_threads()
    try:
        settings, device = run_prelude({"seed": 3, "threads": 1, "device": "cpu", "replicates": None})
        first = torch.rand(3)
        assert (settings.seed, settings.threads, torch.get_num_threads(), device.type) == (3, 1, 1, "cpu")
        assert settings.replicates > 0, "a None setting takes its default"
        again, chosen = run_prelude({"seed": 3, "threads": 1, "device": "cpu"}, lambda: torch.device("meta"))
        assert torch.equal(torch.rand(3), first) and chosen.type == "meta", "the caller's device (DDP's) wins"
        assert run_prelude({"seed": 3, "device": "cpu"}, lambda: None)[1].type == "cpu", "no DDP: the setting"
    finally:
        torch.set_num_threads(threads)


def test_a_process_age_is_measured_to_a_clock_tick():
    """The unit's ``startup`` (its kernel's age when the run starts) must not carry the up-to-a-second error of a
    boot time rounded to whole seconds (psutil's ``create_time`` on Linux)."""
    import sys

    code = ("import time; from ocular_utils.core.environment import process_age_seconds as age; "
            "print(age(), time.time())")
    before = time.time()
    age, printed_at = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                check=True, cwd=project_root()).stdout.split())
    assert 0 < age <= printed_at - before + 0.02, "the child cannot be older than the time since it was spawned"
    assert age >= 0.5 * (printed_at - before) - 0.02, "nor much younger: its imports took most of that time"
