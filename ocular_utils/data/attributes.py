"""Subject attributes (groups) where the data has them: one value per subject and attribute.

Sources, read for every layout and merged (an attribute named by two sources is an error):

* ``<root>/subject_attributes.csv`` (:data:`ATTRIBUTE_FILE`), or the file a profile names in
  ``data.attributes``: a user table ``subject,attribute,value`` (one row per subject and attribute);
  the synthetic generator writes its synthetic groups in this form;
* VISOB: ``gender.json`` at the root (subject -> gender, as VISOB copies carry it);
* UFPR-Periocular: the protocol lines' columns 4 (gender), 3 (age group) and 6 (device); the brief's
  reading of columns 3 and 6 is "probably", so their names say so.

A subject absent from a table has no value (its trials count in no group). The result is a wide
frame (index ``subject``, one column per attribute, strings). Bad tables fail with one error naming
the file and the row: an unknown subject, two values for one subject, an attribute with one value.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .schema import DatasetError, OcularDataset

ATTRIBUTE_FILE = "subject_attributes.csv"  # subject,attribute,value
VISOB_GENDER_FILE = "gender.json"
UFPR_COLUMNS = {"gender": "gender", "col3": "age group (probably)", "col6": "device (probably)"}
TABLE_COLUMNS = ["subject", "attribute", "value"]


def _checked(rows: pd.DataFrame, source: str, subjects: set[str], one_value: str = "error") -> pd.DataFrame:
    """Validate long rows (``subject, attribute, value, where``) and pivot them to one column per attribute.

    ``one_value``: ``"error"`` refuses an attribute with a single value, ``"drop"`` leaves it out (a built-in
    source whose column does not vary in this copy of the data).
    """
    unknown = rows[~rows["subject"].isin(subjects)]
    if len(unknown):
        first = unknown.iloc[0]
        raise DatasetError(f"{source}: {first['where']}: subject {first['subject']!r} is not in the data set "
                           f"({len(unknown)} rows name unknown subjects; the data set has {len(subjects)} subjects, "
                           f"e.g. {sorted(subjects)[:3]})")
    empty = rows[rows["value"].str.strip() == ""]
    if len(empty):
        raise DatasetError(f"{source}: {empty.iloc[0]['where']}: empty value for subject {empty.iloc[0]['subject']!r}")
    for (subject, attribute), group in rows.groupby(["subject", "attribute"], sort=False):
        values = group["value"].unique()
        if len(values) > 1:
            first, other = group.iloc[0], group[group["value"] != group.iloc[0]["value"]].iloc[0]
            raise DatasetError(f"{source}: {other['where']}: subject {subject!r} has two values for attribute "
                               f"{attribute!r}: {first['value']!r} ({first['where']}) and {other['value']!r}")
    kept = []
    for attribute, group in rows.groupby("attribute", sort=True):
        values = sorted(group["value"].unique())
        if len(values) < 2:
            if one_value == "error":
                raise DatasetError(f"{source}: {group.iloc[0]['where']}: attribute {attribute!r} has one value only "
                                   f"({values[0]!r}); a comparison of groups needs at least two")
            continue
        kept.append(attribute)
    rows = rows[rows["attribute"].isin(kept)].drop_duplicates(["subject", "attribute"])
    wide = rows.pivot(index="subject", columns="attribute", values="value")
    wide.columns.name = None
    return wide


def read_attribute_table(path: str | Path, subjects) -> pd.DataFrame:
    """A user table ``subject,attribute,value`` (CSV with that header), validated against ``subjects``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"subject attribute table {path} does not exist (expected a CSV with header "
                                f"{','.join(TABLE_COLUMNS)})")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a readable CSV ({error})") from None
    if list(table.columns) != TABLE_COLUMNS:
        raise DatasetError(f"{path}: header is {','.join(table.columns)}; expected {','.join(TABLE_COLUMNS)}")
    table["where"] = [f"line {k + 2}" for k in range(len(table))]
    return _checked(table, str(path), set(subjects))


def visob_gender(path: Path, subjects) -> pd.DataFrame:
    """VISOB's ``gender.json`` (an object subject -> gender) as an attribute column."""
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected an object mapping subject IDs to genders, found {type(content).__name__}")
    rows = pd.DataFrame([{"subject": str(s), "attribute": "gender", "value": str(v), "where": f"key {s!r}"}
                         for s, v in content.items()], columns=TABLE_COLUMNS + ["where"])
    return _checked(rows, str(path), set(subjects))


def ufpr_protocol_attributes(dataset: OcularDataset) -> tuple[pd.DataFrame, list[str]]:
    """Gender, age group and device of each subject from UFPR's protocol lines (constant columns left out)."""
    rows = []
    for protocol, folds in dataset.protocols.items():
        for fold, entry in folds.items():
            for part in ("train", "val", "test"):
                for k, line in enumerate(entry[part].itertuples(index=False), start=1):
                    for column, attribute in UFPR_COLUMNS.items():
                        rows.append({"subject": line.file[:5], "attribute": attribute,
                                     "value": str(getattr(line, column)),
                                     "where": f"{protocol}/{part}_fold{fold}.txt line {k}"})
    if not rows:
        return pd.DataFrame(), []
    rows = pd.DataFrame(rows)
    wide = _checked(rows, str(dataset.root / "experimentalProtocol"), set(dataset.subjects), one_value="drop")
    dropped = sorted(set(UFPR_COLUMNS.values()) - set(wide.columns))
    notes = [f"protocol column {name!r} has one value in this copy: not used as a group" for name in dropped]
    return wide, notes


def subject_attributes(dataset: OcularDataset, table: str | Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every attribute source of ``dataset`` merged (``table``: a user CSV, else ``<root>/subject_attributes.csv``
    when present). Returns the wide frame and notes naming the sources."""
    sources, notes = [], []
    table = Path(table) if table is not None else dataset.root / ATTRIBUTE_FILE
    if table.is_file() or table != dataset.root / ATTRIBUTE_FILE:
        sources.append((str(table), read_attribute_table(table, dataset.subjects)))
    gender = dataset.root / VISOB_GENDER_FILE
    if dataset.layout == "visob" and gender.is_file():
        sources.append((str(gender), visob_gender(gender, dataset.subjects)))
    if dataset.layout == "ufpr" and dataset.protocols:
        wide, dropped = ufpr_protocol_attributes(dataset)
        notes += dropped
        if not wide.empty:
            sources.append(("the protocol files", wide))
    merged = pd.DataFrame(index=pd.Index(dataset.subjects, name="subject"))
    for source, wide in sources:
        clash = sorted(set(wide.columns) & set(merged.columns))
        if clash:
            raise DatasetError(f"attributes {clash} are given twice: by {source} and by an earlier source")
        merged = merged.join(wide)
        notes.append(f"subject attributes {sorted(wide.columns)} from {source}")
    return merged, notes
