"""The one formatting layer for every table a chapter shows, built on great_tables.

great_tables (static HTML) rather than itables: the book is a publication read offline, its tables
are short (a few to ~60 rows), and great_tables writes a self-contained table without JavaScript,
so a page renders the same in any browser and in the strict offline Sphinx build. A table goes
through :func:`show`: no index column (a named index becomes ordinary columns), booleans and
missing values as words, rates in percent where the caller names them, p-values as ``< 0.001``,
integers with thousands separators and other numbers at a precision that fits their size. An EER
and its interval share one cell (:func:`interval_cell`).
"""
from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import pandas as pd

MISSING_TEXT = "n/a"
BOOLEAN_TEXT = {True: "yes", False: "no"}


def interval_cell(value, low, high, digits: int = 2, signed: bool = False, scale: float = 100.0) -> str:
    """``value [low, high]`` of one estimate and its interval (rates scaled to percent by default)."""
    if any(x is None or (isinstance(x, float) and np.isnan(x)) for x in (value, low, high)):
        return MISSING_TEXT
    sign = "+" if signed else ""
    return f"{scale * value:{sign}.{digits}f} {interval_text(low, high, digits, signed, scale)}"


def interval_text(low, high, digits: int = 2, signed: bool = True, scale: float = 100.0) -> str:
    """``[low, high]``: an interval alone (of a difference: signed; rates scaled to percent by default)."""
    sign = "+" if signed else ""
    return f"[{scale * low:{sign}.{digits}f}, {scale * high:{sign}.{digits}f}]"


def p_value_text(p) -> str:
    """A p-value at three decimals, ``< 0.001`` below that (missing as a word)."""
    if p is None or (isinstance(p, float) and np.isnan(p)):
        return MISSING_TEXT
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value))


def number_text(value, digits: int | None = None) -> str:
    """One number as text: integers with separators; floats at ``digits`` or a precision that fits their size."""
    if _is_missing(value):
        return MISSING_TEXT
    if isinstance(value, (bool, np.bool_)):
        return BOOLEAN_TEXT[bool(value)]
    if isinstance(value, numbers.Integral) or digits == 0:
        return f"{round(value):,}"
    if digits is None:
        size = abs(float(value))
        digits = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 1 else 3
    return f"{float(value):,.{digits}f}"


def cell_text(value, digits: int | None = None) -> str:
    """Any cell as text a reader can read: words for booleans and missing values, numbers by :func:`number_text`."""
    if _is_missing(value):
        return MISSING_TEXT
    if isinstance(value, (bool, np.bool_)):
        return BOOLEAN_TEXT[bool(value)]
    if isinstance(value, numbers.Number):
        return number_text(value, digits)
    if isinstance(value, (list, tuple)):
        return ", ".join(cell_text(v, digits) for v in value) or MISSING_TEXT
    text = str(value)
    return text if text.strip() else MISSING_TEXT


def _whole(values: pd.Series) -> int | None:
    """0 for a numeric column of whole numbers (counts stored as floats), else None (precision by size)."""
    numeric = pd.to_numeric(values, errors="coerce").dropna() if values.dtype == object else values.dropna()
    if not pd.api.types.is_float_dtype(numeric) or numeric.empty or values.map(
            lambda v: isinstance(v, (bool, np.bool_))).any():
        return None
    return 0 if bool((numeric == numeric.round()).all()) else None


def readable(frame: pd.DataFrame | pd.Series, percent=(), p_values=(), digits: dict | None = None,
             joined: dict | None = None) -> pd.DataFrame:
    """``frame`` as text cells: index into columns, ``percent`` columns x100, ``p_values`` as p, the rest by
    :func:`cell_text` (``digits`` fixes the decimals of named columns). ``joined`` maps a new column to
    ``(estimate column, interval column)``: a difference or change and its interval text in one cell, in place of
    both, the estimate signed as its interval is."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    frame = frame.copy()
    for name, (value, interval) in (joined or {}).items():
        position = list(frame.columns).index(value)
        cell = [MISSING_TEXT if _is_missing(v) else f"{v:+.2f} {i}" for v, i in
                zip(frame[value], frame[interval])]
        frame = frame.drop(columns=[value, interval])
        frame.insert(position, name, cell)
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [" ".join(str(part) for part in column if str(part)) for column in frame.columns]
    unnamed = all(name is None for name in frame.index.names)
    if unnamed and pd.api.types.is_integer_dtype(frame.index):
        frame = frame.reset_index(drop=True)  # positions, not data: no index column
    else:
        frame = frame.reset_index(names=[name if name is not None else ("" if i == 0 else f"level {i}")
                                         for i, name in enumerate(frame.index.names)])
    digits = digits or {}
    out = {}
    for column in frame.columns:
        values = frame[column]
        if column in p_values:
            out[column] = values.map(p_value_text)
        elif column in percent:
            out[column] = values.map(lambda v: cell_text(100 * v if not _is_missing(v) else v,
                                                         digits.get(column, 2)))
        else:
            out[column] = values.map(lambda v, d=digits.get(column, _whole(values)): cell_text(v, d))
    return pd.DataFrame(out, columns=frame.columns)


def show(frame: pd.DataFrame | pd.Series, title: str | None = None, percent=(), p_values=(),
         digits: dict | None = None, joined: dict | None = None, note: str | list[str] | None = None, wrap=()):
    """The table a chapter displays (a great_tables ``GT``): :func:`readable` cells, left-aligned text,
    an optional title and source note (a list gives one line each); ``wrap`` names long-text columns that break
    across lines (and at each newline of a cell)."""
    from great_tables import GT, loc, style

    cells = readable(frame, percent, p_values, digits, joined)
    table = GT(cells).cols_align("left").tab_options(table_font_size="14px", table_margin_left="0px",
                                                     column_labels_font_weight="bold")
    if title:
        table = table.tab_header(title=title)
    for line in [note] if isinstance(note, str) else (note or []):
        table = table.tab_source_note(line)
    wrapped = [c for c in wrap if c in cells.columns]
    if wrapped:
        table = table.tab_style(style.css("white-space: pre-line; min-width: 9em"), loc.body(columns=wrapped))
    intervals = [c for c in cells.columns if "[" in str(c) and c not in wrapped]
    if intervals:  # an estimate and its interval stay on one line
        table = table.tab_style(style.css("white-space: nowrap"), loc.body(columns=intervals))
    return table



def write_html(table, path) -> Path:
    """Write a :func:`show` table as a self-contained HTML fragment, atomically (a book page includes it with
    MyST's ``{raw} html`` directive and its ``:file:`` option)."""
    from ..core.atomic import atomic_write_bytes

    return atomic_write_bytes(path, table.as_raw_html().encode())
