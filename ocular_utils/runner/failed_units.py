"""The units of a run that failed or were blocked: ``failures.json`` (the book lists them), the messages and the
exit status."""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.atomic import atomic_write_json

FAILURES = "failures.json"  # in results/<profile>: the units of the last run that failed or were blocked


def left_out_units(failures: dict, blocked: dict[str, str]) -> dict[str, str]:
    """Name -> key of every unit that failed or was blocked in this run (what later rounds go on without)."""
    return blocked | {name: failure.key for name, failure in failures.items()}


def write_failures(results: Path, failures: dict, blocked: dict[str, str], units: dict) -> None:
    """Record this run's failed and blocked units in ``failures.json`` (the book lists them); none: remove it."""
    path = results / FAILURES
    if not failures and not blocked:
        path.unlink(missing_ok=True)
        return
    atomic_write_json(path, {"failed": {name: {"error": str(f), "user_error": f.user_error,
                                               "notebook": str(units[name].output) if name in units else None}
                                        for name, f in failures.items()},
                             "blocked": sorted(blocked)})


def report_failures(failures: dict, units: dict) -> int:
    """Print each failed unit's error (type and whole message) and its executed notebook; the exit status.

    A run whose failures are all user errors (bad data or settings) ends like any user error (2), else 1.
    """
    for name, failure in failures.items():
        if failure.user_error:
            print(f"ocular-study: error: {name}: {failure} (executed notebook: {units[name].output})", file=sys.stderr)
        else:
            print(f"FAILED {name}: {failure}\n  executed notebook: {units[name].output}", file=sys.stderr)
    if not failures:
        return 0
    return 2 if all(f.user_error for f in failures.values()) else 1
