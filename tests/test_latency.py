"""Latency harness (fake clock, threads restored), cost counts, and export round trips."""
import itertools
import os

import pandas as pd
import pytest
import torch
from torch import nn

from ocular_utils.compression.unstructured import prune
from ocular_utils.core.environment import thread_count
from ocular_utils.deployment import export, latency
from ocular_utils.models import counting as costs
from ocular_utils.models.networks import build_model, deployed_network


def test_statistics_on_a_fake_clock():
    durations = iter([0.010, 0.030, 0.020, 0.040, 0.100])
    now = itertools.count()
    ticks = []

    def clock():
        if len(ticks) % 2 == 0:
            ticks.append(float(next(now)))
        else:
            ticks.append(ticks[-1] + next(durations))
        return ticks[-1]

    calls = []
    result = latency.time_callable(lambda: calls.append(1), warmup=2, repeats=5, clock=clock)
    assert len(calls) == 7 and result.repeats == 5 and result.warmup == 2
    assert result.min_ms == pytest.approx(10) and result.median_ms == pytest.approx(30)
    assert result.mean_ms == pytest.approx(40)
    assert result.p90_ms == pytest.approx(76)  # numpy linear interpolation between 40 and 100


def test_max_seconds_stops_early_and_min_seconds_extends():
    t = {"now": 0.0}

    def clock():
        t["now"] += 0.5
        return t["now"]

    assert latency.time_callable(lambda: None, warmup=0, repeats=100, max_seconds=1.0, clock=clock).repeats == 3
    t["now"] = 0.0
    assert latency.time_callable(lambda: None, warmup=0, repeats=2, min_seconds=2.0, clock=clock).repeats == 4


def test_thread_setting_is_restored():
    before = torch.get_num_threads()
    with thread_count(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten())
    latency.time_eager(net, (4, 4), threads=1, repeats=2, warmup=0)
    assert torch.get_num_threads() == before


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                                      nn.Conv2d(4, 8, 3, groups=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embedding = nn.Sequential(nn.Linear(8, 5))

    def forward(self, x):
        return self.embedding(self.backbone(x))


def test_cost_counts_against_hand_counts():
    net = Tiny()
    cost = costs.model_cost(net, (8, 8))
    # params: conv1 4*3*9 = 108; conv2 8*(4/2)*9 + 8 = 152; linear 8*5 + 5 = 45
    assert cost["params"] == 108 + 152 + 45
    # MACs at 8x8: conv1 out 4x4 -> 16 * 108; conv2 out 4x4 -> 16 * 144; linear 40
    assert cost["macs"] == 16 * 108 + 16 * 144 + 40
    with torch.no_grad():
        net.backbone[0].weight[:2].zero_()
    cost = costs.model_cost(net, (8, 8))
    assert cost["nonzero_macs"] == 16 * 54 + 16 * 144 + 40
    assert cost["nonzero_params"] == 305 - 54


def test_costs_see_pruning_masks():
    model = build_model("resnet18", 5, 16)
    dense = costs.model_cost(deployed_network(model), (32, 32))
    prune(model, "layer_weight", 4)
    sparse = costs.model_cost(deployed_network(model), (32, 32))
    assert sparse["macs"] == dense["macs"] and sparse["params"] == dense["params"]
    assert sparse["nonzero_params"] == pytest.approx(dense["params"] / 4, rel=0.01)
    assert sparse["nonzero_macs"] < 0.35 * dense["macs"]


@pytest.fixture(scope="module")
def small_embedder():
    torch.manual_seed(0)
    return deployed_network(build_model("mobilenet_v3_small", 4, 8)).eval()


def test_onnx_round_trip(small_embedder, tmp_path):
    path = export.export_onnx(small_embedder, tmp_path / "m.onnx", (32, 48))
    assert export.verify_onnx(small_embedder, path, (32, 48)) < export.ATOL
    session = export.onnx_session(path)
    assert session.get_inputs()[0].shape[0] not in (1, 2, 3)  # a symbolic (dynamic) batch dimension


@pytest.mark.skipif(not export.executorch_available(), reason="ExecuTorch is not installed")
def test_executorch_round_trip(small_embedder, tmp_path):
    path = export.export_executorch(small_embedder, tmp_path / "m.pte", (32, 48))
    assert export.verify_executorch(small_embedder, path, (32, 48)) < export.ATOL
    timing = latency.time_executorch(path, (32, 48), threads=1, repeats=3, warmup=1)
    assert timing.repeats == 3 and timing.warmup == 1
    assert timing.min_ms <= timing.median_ms <= timing.p90_ms and timing.min_ms <= timing.mean_ms


def test_mismatch_is_an_error():
    import numpy as np

    with pytest.raises(export.ExportMismatchError, match="differs from eager"):
        export.check_agreement(np.zeros(3), np.ones(3), "test runtime")


@pytest.mark.skipif(not export.coreml_available(), reason="coremltools is not installed (optional extra)")
def test_coreml_export(small_embedder, tmp_path, capsys):
    path = export.export_coreml(small_embedder, tmp_path / "m.mlpackage", (32, 48))
    int8 = export.export_coreml(small_embedder, tmp_path / "m8.mlpackage", (32, 48), int8_weights=True)
    assert (path / "Manifest.json").is_file() and (int8 / "Manifest.json").is_file()
    assert "Running MIL" not in capsys.readouterr().err  # no progress bars in notebooks or the kit's output


def test_benchmark_rows(small_embedder, tmp_path):
    table = latency.benchmark_network("tiny", small_embedder, (32, 48), tmp_path, ["eager", "onnxruntime"], 1,
                                      repeats=3, warmup=1)
    assert list(table["runtime"]) == ["eager", "onnxruntime"] and list(table["repeats"]) == [3, 3]
    assert (table["min_ms"] <= table["median_ms"]).all() and (table["median_ms"] <= table["p90_ms"]).all()
    assert table.loc[1, "file_bytes"] > 0 and pd.isna(table.loc[0, "file_bytes"])
    assert not (tmp_path / "tiny-32x48.onnx").exists()  # a timing-only export is deleted once timed
    assert table.loc[0, "max_abs_diff"] == 0 and table.loc[1, "max_abs_diff"] < export.ATOL
    route_file = export.export_onnx(small_embedder, tmp_path / "route" / "fp32-32x48.onnx", (32, 48))
    again = latency.benchmark_network("tiny", small_embedder, (32, 48), tmp_path / "bench", ["onnxruntime"], 1,
                                      {"onnxruntime": route_file}, repeats=3, warmup=1)
    assert again.loc[0, "file_bytes"] == route_file.stat().st_size and route_file.is_file()  # timed, kept
    assert not (tmp_path / "bench").exists()  # nothing exported again
    with pytest.raises(ValueError, match="unknown runtimes"):
        latency.benchmark_network("tiny", small_embedder, (32, 48), tmp_path, ["tflite"])


def test_environment_variable_is_restored():
    from ocular_utils.core.environment import environment_variable

    os.environ.pop("OCULAR_TEST_VARIABLE", None)
    with environment_variable("OCULAR_TEST_VARIABLE", "1"):
        assert os.environ["OCULAR_TEST_VARIABLE"] == "1"
    assert "OCULAR_TEST_VARIABLE" not in os.environ
    os.environ["OCULAR_TEST_VARIABLE"] = "before"
    with pytest.raises(RuntimeError), environment_variable("OCULAR_TEST_VARIABLE", "during"):
        raise RuntimeError("a failing conversion")
    assert os.environ.pop("OCULAR_TEST_VARIABLE") == "before"


def test_route_fp32_files_are_found_by_parent_runtime_and_size(tmp_path):
    """The latency unit times a route parent in the route's own fp32 files: they are looked up from its record."""
    import json

    from ocular_utils.deployment.route_timing import fp32_artifacts

    route, parent = tmp_path / "quantize" / "int8-base", tmp_path / "base"
    route.mkdir(parents=True)
    artifacts = [{"runtime": runtime, "precision": precision, "input": "32x48",
                  "file": str(route / f"{precision}-32x48{suffix}")}
                 for runtime, suffix in (("executorch", ".pte"), ("onnxruntime", ".onnx"))
                 for precision in ("fp32", "int8")]
    (route / "record.json").write_text(json.dumps({"status": "complete", "params": {"parent_dir": str(parent)},
                                                   "details": {"artifacts": artifacts}}))
    assert fp32_artifacts([route]) == {(parent, "executorch", "32x48"): route / "fp32-32x48.pte",
                                       (parent, "onnxruntime", "32x48"): route / "fp32-32x48.onnx"}
    with pytest.raises(FileNotFoundError, match="has no complete record"):
        fp32_artifacts([tmp_path / "missing"])


def test_a_rerun_export_replaces_its_files_and_leaves_a_kits_linked_copy_alone(tmp_path):
    """Artifacts are written atomically: exporting again never writes through a hard link (the phone kit's)."""
    from ocular_utils.core.atomic import atomic_link
    from ocular_utils.deployment.quantize import quantize_onnx

    def net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    batches = [torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))]
    exports = {"fp32.pte": lambda n, p: export.export_executorch(n, p, (8, 8)),
               "fp32.onnx": lambda n, p: export.export_onnx(n, p, (8, 8)),
               "int8.onnx": lambda n, p: quantize_onnx(export.export_onnx(n, tmp_path / f"{p.name}.src", (8, 8)),
                                                       p, batches)}
    for name, write in exports.items():
        path, kit = tmp_path / "run" / name, tmp_path / "kit" / name
        write(net(0), path)
        atomic_link(path, kit)
        before = kit.read_bytes()
        write(net(1), path)
        assert kit.read_bytes() == before and path.read_bytes() != before, name
        assert not [f for f in path.parent.iterdir() if f.name.startswith(".")], "no temporary file is left"


def test_kit_files_are_hard_links_or_copies(tmp_path, monkeypatch):
    """The phone kit takes no second copy of an artifact where the file system can link; elsewhere it copies."""
    from ocular_utils.core.atomic import atomic_link

    source, target = tmp_path / "fp32-32x48.pte", tmp_path / "kit" / "route-fp32-32x48.pte"
    source.write_bytes(b"program")
    target.parent.mkdir()
    target.write_bytes(b"an older kit's file")
    atomic_link(source, target)
    assert target.stat().st_ino == source.stat().st_ino and target.read_bytes() == b"program"

    def cannot_link(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("os.link", cannot_link)
    atomic_link(source, target)
    assert target.stat().st_ino != source.stat().st_ino and target.read_bytes() == b"program"


@pytest.mark.skipif(not export.coreml_available(), reason="coremltools is not installed (optional extra)")
def test_kit_takes_the_latency_units_core_ml_package_instead_of_converting_again(tmp_path):
    """Core ML is converted once: the kit links the latency unit's fp16 package of a route's parent (same model,
    same input) and converts only the int8-weights package itself."""
    from ocular_utils.deployment.kit import coreml_entries, latency_package
    from ocular_utils.models.files import save_model

    torch.manual_seed(0)
    parent = tmp_path / "runs" / "base-0123"
    parent.mkdir(parents=True)
    save_model(build_model("mobilenet_v3_small", 4, 8), parent)
    latency_dir = tmp_path / "runs" / "latency-4567"
    assert latency_package(latency_dir, parent, (32, 48)) is None  # nothing converted yet: the kit converts
    package = latency.coreml_package_path(latency_dir / latency.EXPORT_FOLDER, parent.name, (32, 48))
    export.export_coreml(latency.load_network(parent), package, (32, 48))
    assert latency_package(latency_dir, parent, (32, 48)) == package
    assert latency_package(latency_dir, parent, (64, 96)) is None  # another input size is another package
    kit = tmp_path / "kit"
    kit.mkdir()
    entries = coreml_entries(parent, "int8-base", (32, 48), kit, {}, converted=package)
    assert [e["precision"] for e in entries] == ["fp16", "int8 weights, fp16 activations"]
    weights = next(package.rglob("weight.bin"))
    linked = kit / "int8-base-coreml-fp16.mlpackage" / weights.relative_to(package)
    assert linked.stat().st_ino == weights.stat().st_ino  # the same file, not a second conversion
    assert (kit / "int8-base-coreml-int8w.mlpackage" / "Manifest.json").is_file()


def test_the_runtime_benchmark_times_a_route_file_instead_of_exporting_again(tmp_path, monkeypatch):
    """A file named by a route (its parent folder written another way: with '..') is timed, not exported."""
    from ocular_utils.deployment import latency
    from ocular_utils.models.files import save_model

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 4, 8)
    parent = tmp_path / "runs" / "base-abc"
    save_model(model, parent)
    existing = export.export_onnx(deployed_network(model).eval(), tmp_path / "route" / "fp32-32x48.onnx", (32, 48))
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    models = pd.DataFrame([{"run": "base-abc", "run_dir": str(parent)}])
    key = (tmp_path / "runs" / ".." / "runs" / "base-abc", "onnxruntime", "32x48")
    table = latency.benchmark_runs(models, [(32, 48)], ["onnxruntime"], tmp_path / "exports", 1,
                                   {key: existing}, repeats=2, warmup=1)
    assert list(table["file_bytes"]) == [existing.stat().st_size] and existing.exists()
    assert table.loc[0, "max_abs_diff"] < 1e-4


def test_a_route_parent_timed_by_the_runtime_benchmark_is_not_timed_again(tmp_path, monkeypatch):
    """The latency unit times each route parent's fp32 programs once: route timing takes those rows."""
    import json

    from ocular_utils.deployment import route_timing
    from ocular_utils.models.files import save_model

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 4, 8)
    parent, route = tmp_path / "base-abc", tmp_path / "quantize" / "int8-base"
    save_model(model, parent)
    artifacts = []
    for precision in ("fp32", "int8"):  # an fp32 file stands in for the int8 one: timing does not care
        path = export.export_onnx(deployed_network(model).eval(), route / f"{precision}-32x48.onnx", (32, 48))
        artifacts.append({"runtime": "onnxruntime", "precision": precision, "input": "32x48", "file": str(path),
                          "bytes": path.stat().st_size})
    (route / "record.json").write_text(json.dumps({"status": "complete", "params": {"parent_dir": str(parent)},
                                                   "details": {"artifacts": artifacts}}))
    timing = {"repeats": 2, "warmup": 1}
    alone = route_timing.time_artifacts([route], 1, **timing)
    assert list(zip(alone["runtime"], alone["precision"])) == [("eager", "fp32"), ("onnxruntime", "fp32"),
                                                              ("onnxruntime", "int8")]
    assert (alone["median_ms"] > 0).all() and (alone["repeats"] == 2).all()
    timed = pd.DataFrame([{"run": parent.name, "runtime": runtime, "input": "32x48", "threads": 1,
                           "min_ms": 1.0, "median_ms": 123.0, "p90_ms": 2.0, "mean_ms": 1.5, "repeats": 7,
                           "warmup": 1} for runtime in ("eager", "onnxruntime")])
    monkeypatch.setattr(route_timing, "load_model", lambda *a, **k: pytest.fail("the parent was loaded again"))
    reused = route_timing.time_artifacts([route], 1, timed, **timing)
    assert list(reused["median_ms"][:2]) == [123.0, 123.0] and list(reused["repeats"][:2]) == [7, 7]
    assert reused.loc[2, "median_ms"] != 123.0 and reused.loc[2, "repeats"] == 2  # int8: timed here
    monkeypatch.undo()
    other_threads = route_timing.time_artifacts([route], 2, timed, **timing)  # rows at 1 thread are not reused
    assert (other_threads["repeats"] == 2).all() and (other_threads["threads"] == 2).all()
