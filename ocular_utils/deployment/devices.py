"""Latency measured on real devices (phones, tablets), dropped in as CSV files under ``data/``.

Schema (one row per measurement; ``median_ms`` empty where a device is listed but not measured):

=============  =====================================================================
column         meaning
=============  =====================================================================
device         device name, e.g. "iPhone XR"
runtime        runtime used on the device, e.g. "executorch-xnnpack", "coreml"
model          model name as in the study's records, e.g. "resnet50", "mobilenet_v2"
input_size     input as HxW, e.g. "224x224"
threads        CPU threads used (integer)
median_ms      median feature-extraction time in milliseconds (empty = not measured)
source         who measured it and how (app, date, or a citation)
=============  =====================================================================
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ("device", "runtime", "model", "input_size", "threads", "median_ms", "source")


def load_device_measurements(folder: str | Path, pattern: str = "device_latency*.csv") -> pd.DataFrame:
    """Read every CSV matching ``pattern`` in ``folder``; check the schema; keep the file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"device measurement folder {folder} does not exist")
    frames = []
    for path in sorted(folder.glob(pattern)):
        frame = pd.read_csv(path, dtype={"device": str, "runtime": str, "model": str, "input_size": str,
                                         "source": str})
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}; expected {list(COLUMNS)}")
        extra = [c for c in frame.columns if c not in COLUMNS]
        if extra:
            raise ValueError(f"{path} has unknown columns {extra}; expected {list(COLUMNS)}")
        bad_size = ~frame["input_size"].str.fullmatch(r"\d+x\d+")
        if bad_size.any():
            raise ValueError(f"{path}: input_size must look like 224x224 (rows {list(frame.index[bad_size] + 2)})")
        frame["median_ms"] = pd.to_numeric(frame["median_ms"], errors="raise")
        frame["threads"] = pd.to_numeric(frame["threads"], errors="raise").astype("Int64")
        frame["file"] = path.name
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS) + ["file"])
    return pd.concat(frames, ignore_index=True)
