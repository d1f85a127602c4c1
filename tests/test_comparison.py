"""The verdicts that set the paper's findings against ours, on hand-made model tables."""
import pandas as pd

from ocular_utils.report import comparison
from ocular_utils.report.plots import pareto_front


def table(layer8=0.10, gradient8=0.12, student=0.03, lossless_at=8, student_ms=5.0):
    rows = [dict(label="resnet50 (base)", family="base", kind="base", compression=1, eer=0.05, median_ms=80.0)]
    for method, eer8 in (("layer_weight", layer8), ("global_gradient", gradient8)):
        for ratio in (2, 4, 8, 16):
            eer = 0.05 if ratio <= lossless_at and method == "layer_weight" else (eer8 if ratio == 8 else 0.3)
            rows.append(dict(label=f"{method} {ratio}x", family="unstructured pruning", kind="prune", method=method,
                             requested=float(ratio), compression=ratio, eer=eer, median_ms=79.0))
    rows.append(dict(label="mobilenet_v2 (logit)", family="KD student", kind="distill", student="mobilenet_v2",
                     kd_loss="logit", compression=9.0, eer=student, median_ms=student_ms))
    frame = pd.DataFrame(rows)
    frame["run"] = [f"run-{i}" for i in range(len(frame))]
    frame["eer ci_low"], frame["eer ci_high"] = frame["eer"] - 0.005, frame["eer"] + 0.005
    frame["macs"] = 1.0
    return frame


def verdicts(frame):
    return comparison.paper_verdicts(frame).set_index("finding")["verdict"]


def test_paper_agreeing_table_agrees():
    v = verdicts(table())
    assert list(v) == ["agree", "agree", "agree", "agree"]


def test_disagreements_and_overlaps_are_named():
    v = verdicts(table(layer8=0.20, gradient8=0.12, student=0.25, lossless_at=4, student_ms=200.0))
    assert list(v) == ["disagree", "disagree", "disagree", "disagree"]
    v = verdicts(table(layer8=0.124, gradient8=0.12, lossless_at=4))
    assert v.iloc[0] == "agree within uncertainty"


def test_equal_compression_picks_the_nearest_ratio():
    pairs = comparison.equal_compression(table())
    rival = pairs[pairs["partner_family"] == "unstructured pruning"]
    assert list(rival["role"]) == ["best unstructured pruning at 8x"] and list(rival["requested"]) == [8.0]


def test_pareto_front():
    points = pd.DataFrame({"cost": [1, 2, 3, 4], "eer": [0.3, 0.1, 0.2, 0.05]})
    assert list(pareto_front(points, "cost")["cost"]) == [1, 2, 4]
