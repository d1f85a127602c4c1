"""Assemble the Jupyter Book (1.x) of one profile from executed notebooks, and build it.

``book/_toc.yml`` is the book's structure and names the *source* notebooks; this module copies the
executed notebooks into ``book/_generated/<profile>`` (a build product), writes a table of contents
that points at them (no re-execution) and adds an appendix with every executed grid notebook.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from ..core.records import display_label, read_record
from .plan import Unit

APPENDIX_CAPTION = "Appendix: every executed run"


PARAMETER_TAGS = ("parameters", "injected-parameters")


def parameters_block(parameters: dict) -> str:
    """A collapsed MyST admonition listing a run's parameters (what papermill passed) as YAML."""
    listing = yaml.safe_dump(parameters, sort_keys=False, default_flow_style=None, width=100).rstrip()
    return ("::::{admonition} Parameters of this run\n:class: dropdown\n"
            "Passed by `ocular-study run` through papermill; the notebook's own defaults fill the rest.\n\n"
            f"```yaml\n{listing}\n```\n::::")


def failures_block(failed: dict, blocked: list[str], missing: list[str] | None = None) -> str:
    """A MyST warning naming what failed (unit and error) and what was left out; for the intro (``missing``
    None: the whole run) or one page (its ``missing`` runs)."""
    names = list(failed) + blocked if missing is None else missing
    why = {name: failed[name]["error"].replace("|", "/") if name in failed else "not run: it depends on a failed unit"
           for name in names}
    rows = "\n".join(f"| `{name}` | {why[name]} |" for name in names)
    scope = "this build" if missing is None else "this page"
    return (f":::{{warning}} Not in {scope}: {len(names)} units\n"
            f"{sum(n in failed for n in names)} failed, the others depend on a failure; {scope} shows what finished. "
            "Fix the cause and run the same `ocular-study run` command again: finished units are kept.\n\n"
            f"| unit | why |\n|---|---|\n{rows}\n:::")


def prepare_page(source: Path, target: Path, title: str | None, notice: str | None = None) -> None:
    """Copy an executed notebook for the book: retitled if ``title``, its notebook and papermill parameter cells
    replaced by one collapsed block of the run's parameters before the first code cell; ``notice`` (MyST)
    follows the title."""
    notebook = json.loads(source.read_text())
    cells = [c for c in notebook["cells"] if not set(c["metadata"].get("tags", [])) & set(PARAMETER_TAGS)]
    first = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), None)
    if title and first is not None:
        lines = "".join(cells[first]["source"]).splitlines()
        if lines and lines[0].startswith("# "):
            lines[0] = f"# {title}"
            cells[first]["source"] = "\n".join(lines)
    if notice:
        cells.insert(0 if first is None else first + 1,
                     {"cell_type": "markdown", "id": "failed-runs", "metadata": {}, "source": notice})
    parameters = notebook.get("metadata", {}).get("papermill", {}).get("parameters")
    if parameters is not None:
        block = {"cell_type": "markdown", "id": "run-parameters", "metadata": {},
                 "source": parameters_block(parameters)}
        code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
        cells.insert(code, block)
    notebook["cells"] = cells
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(notebook, indent=1))


GENERATED = Path("book") / "_generated"
RUN_PAGE_KINDS = ("prune", "distill", "quantize")  # units with a page of their own in the appendix


def runs_table(units: list[Unit], records: list[dict]) -> pd.DataFrame:
    """One row per executed run page (``records`` holds each unit's record, ``{}`` if none): a link to it, its
    kind, the model, test EER, training images, seconds."""
    rows = []
    for unit, record in zip(units, records, strict=True):
        metrics, timings = record.get("metrics", {}), record.get("timings", {})
        rows.append({"run": f'<a href="runs/{unit.run_dir.name}.html">{html.escape(unit.name)}</a>',
                     "kind": unit.kind, "model": html.escape(_run_model(unit, record)),
                     "role": record.get("role"), "test EER %": 100 * metrics["eer"] if metrics.get("eer") is not None
                     else None, "training images": record.get("training_images"),
                     "seconds": sum(v for v in timings.values() if isinstance(v, (int, float))) or None})
    return pd.DataFrame(rows, columns=["run", "kind", "model", "role", "test EER %", "training images", "seconds"])


def _run_model(unit: Unit, record: dict) -> str:
    if not record:
        return "not recorded"
    if unit.kind == "quantize":  # a route: its steps from the parent model
        return f"{unit.params.get('route', '?')} route"
    return display_label(record)


def runs_index_page(units: list[Unit], root: Path) -> str:
    """The appendix's first page (MyST): every executed run in one sortable, searchable table linking to its
    page (itables in its offline mode: the DataTables bundle is embedded, nothing is fetched), under the
    synthetic-data note when a run's record says its data were synthetic."""
    from itables import options, to_html_datatable
    from itables.javascript import generate_init_offline_itables_html

    from ..report.display import readable
    from ..report.tables import SYNTHETIC_NOTE

    records = [read_record(root / unit.run_dir) or {} for unit in units]
    table = readable(runs_table(units, records), digits={"test EER %": 2, "seconds": 0})
    synthetic = any(record.get("synthetic") for record in records)
    datatable = to_html_datatable(table, connected=False, allow_html=True, showIndex=False, pageLength=25,
                                  lengthMenu=[25, 100, -1], classes="display compact",
                                  layout={"topStart": "pageLength", "topEnd": "search", "bottomStart": "info",
                                          "bottomEnd": "paging"})
    return ("# Every executed run\n\n"
            f"{len(units)} runs of this build, each with its executed notebook on a page of its own (in the navigation "
            "under this page). Click a column to sort, type to filter; EERs are on the test trials.\n\n"
            + (SYNTHETIC_NOTE + "\n\n" if synthetic else "")
            + "```{raw} html\n" + generate_init_offline_itables_html(options.dt_bundle)
            + f'<div style="overflow-x: auto">{datatable}</div>\n```\n')


def toc_entries(toc: dict):
    """Every chapter and section entry of a table of contents, in reading order (sections after their page)."""
    def walk(entries):
        for entry in entries:
            yield entry
            yield from walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        yield from walk(part.get("chapters", []))


def assemble(units: dict[str, Unit], root: Path, profile, failures_file: Path | None = None) -> Path:
    """Copy executed notebooks to ``book/_generated/<profile>`` (inside the book's source folder, wherever the
    results live) and write that folder's ``_toc.yml``. With a ``failures_file`` (the runner's
    ``failures.json``), the intro and each page that lacks runs say what failed and why."""
    failures = json.loads(failures_file.read_text()) if failures_file and failures_file.is_file() else {}
    failed, blocked = failures.get("failed", {}), failures.get("blocked", [])
    book_dir = GENERATED / profile.name
    if (root / book_dir).exists():
        shutil.rmtree(root / book_dir)
    chapters = {u.chapter: u for u in units.values() if u.chapter}
    template = yaml.safe_load((root / "book" / "_toc.yml").read_text())
    (root / book_dir).mkdir(parents=True, exist_ok=True)
    intro = root / template["root"]
    shutil.copyfile(intro.with_suffix(".md"), root / book_dir / "intro.md")  # glues from its sibling chapters
    if failed or blocked:
        text = (root / book_dir / "intro.md").read_text()
        title, rest = text.split("\n", 1)
        (root / book_dir / "intro.md").write_text(f"{title}\n\n{failures_block(failed, blocked)}\n{rest}")
    template["root"] = str(book_dir / "intro")
    for entry in toc_entries(template):
        name = Path(entry["file"]).name
        if entry["file"].startswith("notebooks/"):
            unit = chapters.get(name)
            if unit is None or not (root / unit.output).is_file():
                raise FileNotFoundError(f"chapter {name} has no executed notebook; run the study first")
            target = book_dir / f"{name}.ipynb"
            notice = failures_block(failed, blocked, unit.missing) if unit.missing else None
            prepare_page(root / unit.output, root / target, None, notice)
            entry["file"] = str(target.with_suffix(""))
    appendix, shown = [], []
    for unit in units.values():
        if unit.kind in RUN_PAGE_KINDS and (root / unit.output).is_file():
            target = book_dir / "runs" / f"{unit.run_dir.name}.ipynb"
            prepare_page(root / unit.output, root / target, f"Run: {unit.name}")
            appendix.append({"file": str(target.with_suffix(""))})
            shown.append(unit)
    if appendix:
        index = book_dir / "runs.md"
        (root / index).write_text(runs_index_page(shown, root))
        template["parts"].append({"caption": APPENDIX_CAPTION,
                                  "chapters": [{"file": str(index.with_suffix("")), "sections": appendix}]})
    toc = root / book_dir / "_toc.yml"
    toc.write_text(f"# generated for profile {profile.name}; edit book/_toc.yml instead\n" + yaml.safe_dump(
        template, sort_keys=False))
    return toc


class BookBuildFailed(RuntimeError):
    """``jupyter-book build`` failed: the first problem Sphinx reported, and where the whole log is."""

    def __init__(self, problem: str, log: Path):
        super().__init__(f"{problem} (whole log: {log})")
        self.problem, self.log = problem, log


SPHINX_PROBLEM = re.compile(r"^(?P<where>[^\s].*?):(?P<line>\d*):? ?(?P<level>WARNING|ERROR|CRITICAL|SEVERE): "
                            r"(?P<message>.*)$", re.MULTILINE)


def first_sphinx_problem(log: str, root: Path) -> str:
    """The first warning or error of a Sphinx log as ``page: LEVEL: message`` (else the log's last line)."""
    match = SPHINX_PROBLEM.search(log)
    if match is None:
        lines = [line for line in log.splitlines() if line.strip()]
        return lines[-1].strip() if lines else "no output"
    where = match["where"]
    if where.startswith(str(root)):
        where = str(Path(where).relative_to(root))
    line = f":{match['line']}" if match["line"] else ""
    return f"{where}{line}: {match['level']}: {match['message'].strip()}"


def html_folder(root: Path, profile_name: str) -> Path:
    """Where a profile's HTML book lands: ``_build/html`` for the default profile, ``_build/<profile>/html`` else."""
    return root / "_build" / "html" if profile_name == "default" else root / "_build" / profile_name / "html"


def build(root: Path, toc: Path, html: Path, strict: bool = True) -> Path:
    """Run ``jupyter-book build`` (Sphinx, offline) with ``-W`` when ``strict`` and put the HTML in ``html``.

    Jupyter Book always writes ``<path-output>/_build/html``; a book that does not belong at the project's
    ``_build/html`` is built in a work folder beside ``html`` and moved into place.
    """
    work = root if html == root / "_build" / "html" else html.parent / ".jupyter-book"
    shutil.rmtree(work / "_build" / "html", ignore_errors=True)  # no page of an earlier build (a run no longer in
    # the book, a page built with other extensions) may linger; the doctree cache keeps rebuilds fast
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
               "--toc", str(toc),
               "--path-output", str(work), "--builder", "html"]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
    log = html.parent / "book-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(completed.stdout + "\n" + completed.stderr)
    if completed.returncode != 0:
        raise BookBuildFailed(first_sphinx_problem(completed.stdout + "\n" + completed.stderr, root), log)
    built = work / "_build" / "html"
    if built != html:
        shutil.rmtree(html, ignore_errors=True)
        shutil.move(str(built), str(html))
    return html
