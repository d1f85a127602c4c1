"""The runner end to end on the smoke profile: interruption and resume, the book, the Ray engine."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ocular_utils.core.paths import project_root
from ocular_utils.runner.plan import Planner
from ocular_utils.runner.profiles import load_profile

ROOT = project_root()
STUDY = [sys.executable, "-m", "ocular_utils"]


def _records(results: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text())["created"] for p in results.rglob("record.json")}


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def check_book(html: Path) -> int:
    """Every image exists and is non-empty; every internal link points at an existing file. Returns #images."""
    count = 0
    for page in html.rglob("*.html"):
        parser = _Links()
        parser.feed(page.read_text())
        for src in parser.images:
            if src.startswith(("http", "data:")):
                continue
            target = (page.parent / src.split("#")[0]).resolve()
            assert target.is_file() and target.stat().st_size > 0, f"{page.name}: missing image {src}"
            count += 1
        for href in parser.links:
            if href.startswith(("http", "mailto:", "#", "javascript:")):
                continue
            target = (page.parent / href.split("#")[0]).resolve()
            assert target.exists(), f"{page.relative_to(html)}: broken link {href}"
    return count


@pytest.mark.slow
def test_smoke_study_resumes_after_a_kill_and_builds_the_book(tmp_path):
    results = tmp_path / "results"
    command = STUDY + ["run", "--profile", "smoke", "--results", str(results), "--quiet"]
    process = subprocess.Popen(command + ["--no-book"], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while len(_records(results)) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert process.poll() is None, "the study finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = _records(results)
    assert len(done_before) >= 3
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    skipped = int(re.search(r"skipped \(already complete\) (\d+)", finished.stdout).group(1))
    assert skipped >= len(done_before)
    after = _records(results)
    for name, created in done_before.items():
        assert after[name] == created, f"{name} was run again"
    units = Planner(load_profile("smoke"), ROOT, str(results)).build()
    assert all(u.complete(ROOT) for u in units.values())
    routes = {u.params["route"]: json.loads((ROOT / u.run_dir / "record.json").read_text())
              for u in units.values() if u.kind == "quantize"}
    combined = routes["student+channel+int8"]  # student -> channel pruning -> fine-tuning -> int8, end to end
    assert combined["details"]["steps"][-1] == "int8" and combined["metrics"]["eer"] is not None
    assert [p["kind"] for p in combined["details"]["parents"]] == ["prune", "distill", "base"]
    assert all(r["details"]["calibration"]["split"] == "train" for r in routes.values())
    assert all(r["model"]["int8_pte_bytes"] < r["model"]["fp32_pte_bytes"] for r in routes.values())
    html = ROOT / "_build" / "smoke" / "_build" / "html"
    assert (html / "index.html").is_file()
    assert check_book(html) >= 10
    baseline = next(html.rglob("train_base.html")).read_text()
    assert "Synthetic data." in baseline
    again = subprocess.run(command + ["--no-book"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert f"executed 0, skipped (already complete) {len(units)}" in again.stdout


@pytest.mark.slow
def test_ray_engine_runs_units_on_a_local_cluster(tmp_path):
    pytest.importorskip("ray")
    results = tmp_path / "results"
    finished = subprocess.run(STUDY + ["run", "--profile", "smoke", "--results", str(results), "--engine", "ray",
                                       "--max-units", "2", "--no-book", "--quiet"], cwd=ROOT, capture_output=True,
                              text=True, timeout=900)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "executed 2" in finished.stdout
    assert {json.loads(p.read_text())["kind"] for p in results.rglob("record.json")} == {"data", "base"}


@pytest.mark.slow
def test_torchrun_data_parallel_training(tmp_path):
    smoke = (ROOT / "ocular_utils/profiles/smoke.yml").read_text()
    base_train = "train: {epochs: 1, batch_size: 16, warmup_epochs: 0.0}"
    assert base_train in smoke
    profile = smoke.replace(base_train, "train: {epochs: 2, batch_size: 8, warmup_epochs: 0.0}", 1)
    (tmp_path / "ddp.yml").write_text(profile)
    torchrun = Path(sys.executable).parent / "torchrun"
    finished = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", "-m",
                               "ocular_utils", "train", "--profile", str(tmp_path / "ddp.yml"), "--results",
                               str(tmp_path / "results"), "--threads", "1"], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    last = next((tmp_path / "results").rglob("last.pt"))
    import torch

    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 2
    per_rank_batches = state["history"][0]["images"] // 2 // 8
    assert per_rank_batches >= 1 and state["history"][0]["images"] % 16 == 0
