"""Result records, profiles and the device-measurement schema."""
import json

import numpy as np
import pandas as pd
import pytest

from ocular_utils.core import records as results
from ocular_utils.core.atomic import atomic_write_json
from ocular_utils.core.paths import project_root
from ocular_utils.deployment.devices import COLUMNS, load_device_measurements
from ocular_utils.runner.plan import Planner
from ocular_utils.runner.profiles import available_profiles, load_profile


def test_run_key_is_stable_and_sensitive():
    a = results.run_key("prune", {"method": "layer_weight", "compression": 8}, "v1")
    assert a == results.run_key("prune", {"compression": 8, "method": "layer_weight"}, "v1")
    assert a != results.run_key("prune", {"compression": 16, "method": "layer_weight"}, "v1")
    assert a != results.run_key("prune", {"compression": 8, "method": "layer_weight"}, "v2")


def test_code_version_ignores_notebook_outputs(tmp_path):
    from ocular_utils.core.code_version import code_version

    nb = {"cells": [{"cell_type": "code", "source": "x = 1", "outputs": []}], "metadata": {}}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    before = code_version(path)
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "text": "hi"}]
    path.write_text(json.dumps(nb))
    assert code_version(path) == before
    nb["cells"][0]["source"] = "x = 2"
    path.write_text(json.dumps(nb))
    assert code_version(path) != before


def test_a_unit_is_keyed_by_the_code_its_results_depend_on(tmp_path, monkeypatch):
    """Editing a plot leaves every training unit done; editing training code re-keys the units that use it."""
    import shutil

    from ocular_utils.core import code_version as versions

    copy = tmp_path / "ocular_utils"
    shutil.copytree(versions.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(versions, "PACKAGE_DIR", copy)
    profile, notebooks = load_profile("smoke"), project_root() / "notebooks"

    def keys():
        return {name: unit.key for name, unit in Planner(profile, project_root(), str(tmp_path / "r")).build().items()}

    def chapter_keys():  # every round planned at once (as the dry run does): the chapters included
        units = Planner(profile, project_root(), str(tmp_path / "r"), assume_done=True).build().values()
        return {unit.name: unit.key for unit in units if unit.kind == "chapter"}

    def chapter_version():
        return versions.code_version(notebooks / "comparison.ipynb", display=True)

    def edit(module, old, new):
        path = copy / module
        assert old in path.read_text(), module
        path.write_text(path.read_text().replace(old, new, 1))

    first, first_chapter, chapters = keys(), chapter_version(), chapter_keys()
    assert {"comparison", "timing"} <= set(chapters)
    quantize = versions.code_version(notebooks / "quantize.ipynb")
    assert {"data", "base"} <= set(first) and any(name.startswith("distill/") for name in first)

    edit("report/plots.py", '"""', '"""A plot edited. ')
    assert keys() == first, "a plot does not change what a training unit computes"
    assert chapter_version() != first_chapter, "a chapter draws with it"
    drawing = {name for name in chapters  # the chapters that import the plots (all but timing)
               if copy / "report" / "plots.py" in versions.dependencies(notebooks / f"{name}.ipynb", display=True)}
    assert {"comparison", "pruning_results"} <= drawing and "timing" not in drawing
    assert {name for name, key in chapter_keys().items() if chapters[name] != key} == drawing, \
        "every chapter that draws with it is planned to run again"

    edit("deployment/artifacts.py", '"""', '"""Route export edited. ')
    assert keys() == first, "no unit of the first round exports routes"
    assert versions.code_version(notebooks / "quantize.ipynb") != quantize

    edit("training/loop.py", "def make_optimizer(", "def _unused():\n    return 0\n\n\ndef make_optimizer(")
    second = keys()
    assert all(second[name] != key for name, key in first.items()), "every unit of the round trains or times"
    prune = versions.dependencies(notebooks / "prune.ipynb")
    assert copy / "runner" / "session.py" in prune, "the run prelude (seeds, threads, device) counts"
    assert not any(p.is_relative_to(copy / "report") for p in prune) and copy / "runner" / "plan.py" not in prune


def test_records_round_trip_and_only_complete_ones_load(tmp_path):
    record = results.Record("prune", {"compression": 4}, method="random", requested_compression=4,
                            family="unstructured pruning", seed=1, training_images=640, metrics={"eer": 0.1},
                            synthetic=True)
    results.write_record(tmp_path / "a", record)
    assert not results.is_complete(tmp_path / "a"), "a record alone is not a finished unit"
    results.mark_done(tmp_path / "a", "key")
    atomic_write_json(tmp_path / "b" / "record.json", record.to_dict() | {"status": "running"})
    with pytest.raises(RuntimeError, match="missing or incomplete"):
        results.mark_done(tmp_path / "b", "key")
    (tmp_path / "c").mkdir()
    assert results.is_complete(tmp_path / "a") and not results.is_complete(tmp_path / "b")
    table = results.load_records(tmp_path)
    assert len(table) == 1 and table.loc[0, "metrics.eer"] == 0.1 and table.loc[0, "method"] == "random"
    assert table.loc[0, "seed"] == 1 and table.loc[0, "training_images"] == 640 and table.loc[0, "run"] == "a"
    assert results.display_label(table.loc[0]) == "random 4x"
    with pytest.raises(ValueError, match="unknown record kind"):
        results.Record("pruned", {})
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_shipped_profiles_load_and_plan(tmp_path):
    assert {"smoke", "default", "visob", "ufpr"} <= set(available_profiles())
    for name in available_profiles():
        profile = load_profile(name)
        profile.pruning.lr_sweep = []  # the grid at once (the sweep's round is tested on its own)
        units = Planner(profile, project_root(), str(tmp_path)).build()
        base_dir = str(units["base"].run_dir)
        grid = [u for u in units.values() if u.kind == "prune" and u.params["base_dir"] == base_dir
                and u.params["seed"] == profile.seed and u.params["role"] == "grid"]  # not the pruned students,
        # not the extra seeds, not the dedicated-schedule checks
        assert len(grid) == len(profile.pruning.compressions) * len(profile.pruning.methods)
        names = list(units)
        for unit in units.values():
            assert all(names.index(dep) < names.index(unit.name) for dep in unit.deps), unit.name
    default = load_profile("default")
    assert len(default.pruning.methods) == 7 and default.pruning.compressions == [2, 4, 8, 16, 32]


def test_bad_profiles_are_named(tmp_path):
    text = (project_root() / "ocular_utils/profiles/smoke.yml").read_text()
    for old, new, message in [("methods: [layer_weight", "methods: [magnitude",
                               "unknown compression method 'magnitude'"),
                              ("compressions: [4]", "compressions: [0.5]", "not a ratio"),
                              ("train: {epochs: 1, batch_size: 16,", "train: {epoch: 1, batch_size: 16,",
                               r"profile.base.train has unknown keys \['epoch'\]; known: \['augment'"),
                              ("runtimes: [eager", "runtimes: [tflite", "unknown runtimes \\['tflite'\\]"),
                              ("val_fraction: 0.2", "val_fractions: 0.2", r"profile.data has unknown keys"),
                              ("jobs: 2", "job: 2", r"profile has unknown keys \['job'\]")]:
        path = tmp_path / "p.yml"
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(ValueError, match=message):
            load_profile(path)
    with pytest.raises(ValueError, match="unknown profile"):
        load_profile("nonexistent")


def test_plan_keys_follow_upstream_changes(tmp_path):
    profile = load_profile("smoke")
    profile.pruning.lr_sweep = []
    first = Planner(profile, project_root(), str(tmp_path)).build()
    profile.base.train.epochs = 2
    second = Planner(profile, project_root(), str(tmp_path)).build()
    assert first["data"].key == second["data"].key
    assert first["base"].key != second["base"].key
    assert all(first[n].key != second[n].key for n in first if n.startswith("prune/"))


def test_device_measurements_schema(tmp_path):
    shipped = load_device_measurements(project_root() / "data")
    assert set(shipped["device"]) >= {"iPhone 6", "iPhone X", "iPhone XR", "iPad Air 2", "iPad 7th generation"}
    assert shipped["median_ms"].isna().all(), "the paper's values are not available: no number may be invented"
    good = pd.DataFrame([["Pixel 8", "executorch-xnnpack", "mobilenet_v2", "224x224", 1, 7.5, "me, 2026"]],
                        columns=COLUMNS)
    good.to_csv(tmp_path / "device_latency_mine.csv", index=False)
    assert load_device_measurements(tmp_path).loc[0, "median_ms"] == 7.5
    good.drop(columns="source").to_csv(tmp_path / "device_latency_bad.csv", index=False)
    with pytest.raises(ValueError, match="lacks columns \\['source'\\]"):
        load_device_measurements(tmp_path)
    (tmp_path / "device_latency_bad.csv").unlink()
    good.assign(input_size="224").to_csv(tmp_path / "device_latency_bad.csv", index=False)
    with pytest.raises(ValueError, match="input_size must look like"):
        load_device_measurements(tmp_path)


def test_duplicate_grid_cells_are_refused():
    profile = load_profile("smoke")
    profile.pruning.lr_sweep = []
    profile.pruning.compressions = [4, 4.0]
    with pytest.raises(ValueError, match="both named"):
        Planner(profile, project_root()).build()


def test_the_grid_waits_for_the_rate_sweep_and_takes_its_choice(tmp_path):
    """Round 1 plans the sweep (validation identities, short budget); round 2 the grid at the chosen rate."""
    from ocular_utils.core.records import Record, mark_done, write_record

    profile = load_profile("smoke")
    planner = Planner(profile, project_root(), str(tmp_path / "results"))
    units = planner.build()
    sweep = [u for u in units.values() if u.params.get("role") == "sweep"]
    assert len(sweep) == len(profile.pruning.lr_sweep) * len(profile.pruning.sweep_methods)
    assert not any(u.params.get("role") == "grid" and u.kind == "prune" for u in units.values())
    assert any("rate sweep" in note for note in planner.pending)
    assert all(u.params["budget"]["points"] == [1.0] for u in sweep)
    assert {u.params["budget"]["images"] for u in sweep} == {round(profile.budget.images
                                                                  * profile.pruning.sweep_fraction)}
    for unit in sweep:  # the second-largest rate has the lowest validation EER
        lr = unit.params["pruning"]["finetune"]["lr"]
        eer = 0.1 if lr == sorted(profile.pruning.lr_sweep)[-2] else 0.3
        write_record(unit.run_dir, Record("prune", unit.params, metrics={"validation_eer": eer}))
        mark_done(unit.run_dir, unit.key)
    units = Planner(profile, project_root(), str(tmp_path / "results")).build()
    grid = [u for u in units.values() if u.kind == "prune" and u.params.get("role") == "grid"]
    assert grid and {u.params["pruning"]["finetune"]["lr"] for u in grid} == {sorted(profile.pruning.lr_sweep)[-2]}


def test_a_dry_run_prices_every_round_of_the_plan(tmp_path):
    """Every round is planned at once for the price; a unit's images are its trunk plus branches."""
    from ocular_utils.runner import pricing
    from ocular_utils.training.budget import RunBudget

    profile = load_profile("smoke")
    now = Planner(profile, project_root(), str(tmp_path)).build()
    full = Planner(profile, project_root(), str(tmp_path), assume_done=True, base_images=160).build()
    assert set(now) < set(full) and any(u.params.get("role") == "total" for u in full.values())
    assert any(u.kind == "chapter" for u in full.values()) and not any(u.kind == "chapter" for u in now.values())
    sweep = next(u for u in full.values() if u.params.get("role") == "sweep")
    assert pricing.unit_images(sweep, 80) == RunBudget.from_dict(sweep.params["budget"]).trained_images(
        sweep.params["pruning"]["finetune"]["batch_size"])
    assert pricing.unit_images(full["base"], 80) == profile.base.train.epochs * 80
    table = pricing.priced_plan(full, 80, images_per_second=10.0)
    training = [u for u in full.values() if u.kind in pricing.TRAINING_KINDS]
    assert table.loc["total", "units"] == len(training)
    assert table.loc["total", "training images"] == sum(pricing.unit_images(u, 80) for u in training)
    assert table.loc["total", "hours"] == pytest.approx(table.loc["total", "training images"] / 10 / 3600)
    unknown = pricing.priced_plan(now, None, images_per_second=10.0)
    assert unknown.loc["base", "unknown"] == 1 and np.isnan(unknown.loc["base", "hours"])
    assert ">= " in pricing.priced_text(unknown, None, 10.0)


def test_the_paper_scale_plan_fits_eight_gpu_hours_at_3000_images_per_second(tmp_path):
    """UFPR open_world_valopen fold 1: 500 training subjects x 2 eyes x 15 crops = 15,000 training images."""
    from ocular_utils.runner import pricing

    profile = load_profile("ufpr")
    units = Planner(profile, project_root(), str(tmp_path), assume_done=True,
                    base_images=profile.base.train.epochs * 15_000).build()
    assert pricing.priced_plan(units, 15_000, images_per_second=3000).loc["total", "hours"] <= 8


def test_recorded_throughput_counts_trunks_and_branches(tmp_path):
    from ocular_utils.core.records import Record, mark_done, write_record
    from ocular_utils.runner.pricing import finished_records, recorded_throughput, recorded_train_images

    history = [{"images": 600, "seconds": 10.0, "branch_images": 200, "branch_seconds": 10.0},
               {"images": 100, "seconds": float("nan"), "branch_images": 0, "branch_seconds": 0.0}]
    write_record(tmp_path / "runs" / "prune" / "a", Record("prune", {}, details={
        "history": history, "split": [{"part": "train", "images": 1620}]}))
    write_record(tmp_path / "runs" / "quantize" / "b", Record("quantize", {}, details={"history": history}))
    write_record(tmp_path / "runs" / "prune" / "unfinished", Record("prune", {}, details={"history": history * 3}))
    for run in ("prune/a", "quantize/b"):
        mark_done(tmp_path / "runs" / run, "key")
    records = finished_records(tmp_path)
    assert recorded_throughput(records) == {"prune": pytest.approx(40.0)}, "800 images in 20 s; no untimed row"
    assert recorded_train_images(records) == 1620
