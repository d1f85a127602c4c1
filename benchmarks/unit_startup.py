"""The fixed start of a unit: from a fresh kernel to the end of ``start_run``, as the study's notebooks pay it.

Every unit of the study is one papermill execution in a new kernel. Before its own work it starts the
kernel, imports the package (torch, torchvision, pandas, matplotlib and seaborn among them), reads its
parameters and prepares the data. This script builds a notebook from the prune notebook's parameters cell
and its import cell, cut right after ``run = start_run(...)`` (nothing trained, no model loaded), executes
it ``--repeats`` times with papermill on the smoke profile's data (decoded once into a cache first), and
prints per execution: papermill's wall time, the record's ``startup`` (kernel process start to
``start_run``: kernel start and imports) and ``data`` seconds.

Run it from two checkouts, interleaved, to compare (the notebook and the package come from ``--project``):

    python benchmarks/unit_startup.py --project . --repeats 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
import papermill

# The kernel's age measured the same way in every checkout (the /proc + CLOCK_BOOTTIME reading of
# ocular_utils.core.environment.process_age_seconds, written out): a checkout before 870aa60 records `startup` from
# psutil's create_time, too long by the fraction of a second its rounded boot time drops; compare
# `since_kernel_start` and `wall` across such checkouts, not `startup`.
PROBE = ("import json, os, time\n"
         "try:\n"
         "    fields = open('/proc/self/stat').read().rsplit(')', 1)[1].split()\n"
         "    age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf('SC_CLK_TCK')\n"
         "except (OSError, AttributeError):  # no /proc (macOS): psutil's create_time is exact there\n"
         "    import psutil\n"
         "    age = time.time() - psutil.Process().create_time()\n"
         "print(json.dumps({'since_kernel_start': age, **run.timings}))")


def startup_notebook(project: Path, out: Path) -> Path:
    """The prune notebook's parameters and import cells, cut after ``start_run``, and a cell printing timings."""
    notebook = nbformat.read(project / "notebooks" / "prune.ipynb", as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    imports = next(c for c in notebook.cells if "start_run(" in c.source)
    head = imports.source[:imports.source.index("\n", imports.source.index("start_run("))]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(head), nbformat.v4.new_code_cell(PROBE)]
    nbformat.write(notebook, out)
    return out


def run_once(project: Path, notebook: Path, data: dict) -> dict:
    """One papermill execution in a fresh kernel: its wall seconds and the timings the last cell printed."""
    executed = notebook.with_name("executed.ipynb")
    started = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(executed), parameters={"data": data, "threads": 1},
                               cwd=str(project), progress_bar=False, kernel_name="python3")
    wall = time.perf_counter() - started
    output = nbformat.read(executed, as_version=4).cells[-1].outputs[0]["text"]
    return {"wall": wall} | json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path("."), help="the checkout whose notebook and package run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    project = args.project.resolve()
    folder = Path(tempfile.mkdtemp(prefix="unit-startup-"))
    data = {"root": str(project / "data" / "generated" / "smoke"), "synthetic": {"subjects": 12, "width": 60,
            "height": 40}, "cache_dir": str(folder / "cache")}
    notebook = startup_notebook(project, folder / "startup.ipynb")
    run_once(project, notebook, data)  # generates and decodes the data once: the study's units find the cache
    rows = [run_once(project, notebook, data) for _ in range(args.repeats)]
    for name in ("wall", "since_kernel_start", "startup", "data"):
        values = [row[name] for row in rows]
        print(f"{name:20s} median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
