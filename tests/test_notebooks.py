"""Papermill executions of the notebooks on tiny parameters, on VISOB- and UFPR-layout data."""
import json

import papermill
import pytest

from ocular_utils.core.paths import project_root
from ocular_utils.core.records import read_record

NOTEBOOKS = project_root() / "notebooks"
TINY_TRAIN = {"epochs": 1, "batch_size": 16, "max_batches_per_epoch": 3}


def _images(path):
    """How many figures the executed notebook shows."""
    notebook = json.loads(path.read_text())
    return sum("image/png" in o.get("data", {}) for c in notebook["cells"] if c["cell_type"] == "code"
               for o in c.get("outputs", []))


def _run(name, out, **params):
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=params, cwd=str(project_root()),
                               progress_bar=False, kernel_name="python3")
    return _images(out)


@pytest.mark.slow
def test_committed_notebooks_have_no_outputs_and_a_parameters_cell():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = json.loads(path.read_text())
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        assert not any(c.get("outputs") for c in code), f"{path.name} is committed with outputs"
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code), path.name


@pytest.mark.slow
def test_baseline_notebook_runs_on_visob_and_ufpr_layouts(visob_root, ufpr_root, tmp_path):
    layouts = {
        "visob": {"root": str(visob_root), "image_size": [32, 48], "val_fraction": 0.2},
        "ufpr": {"root": str(ufpr_root), "layout": "ufpr", "protocol": "open_world_valopen", "fold": 1,
                 "image_size": [32, 48]},
    }
    for name, data in layouts.items():
        run_dir = tmp_path / name
        images = _run("train_base.ipynb", tmp_path / f"{name}.ipynb", data=data,
                      base={"backbone": "resnet18", "embedding_dim": 16, "train": TINY_TRAIN}, replicates=10,
                      run_dir=str(run_dir))
        assert images == 3, name  # training curves, score distributions, ROC/DET
        record = read_record(run_dir)
        assert record["kind"] == "base" and record["family"] == "base" and 0 <= record["metrics"]["eer"] <= 1
        assert record["synthetic"] is (name == "visob") and record["achieved_compression"] == 1
        assert record["training_images"] == 3 * 16 and record["seed"] == 0
        assert {"startup", "data", "train", "evaluate", "save"} <= set(record["timings"])
    ufpr = read_record(tmp_path / "ufpr")
    assert {row["part"]: row["subjects"] for row in ufpr["details"]["split"]} == {"train": 12, "val": 4, "test": 4}


@pytest.mark.slow
def test_data_notebook_on_ufpr_layout(ufpr_root, tmp_path):
    images = _run("data.ipynb", tmp_path / "data.ipynb", base={"backbone": "resnet18"}, run_dir=str(tmp_path / "d"),
                  data={"root": str(ufpr_root), "protocol": "open_world_valopen", "image_size": [32, 48]})
    assert images == 1  # the sample grid
    assert read_record(tmp_path / "d")["metrics"]["subjects"] == 20
