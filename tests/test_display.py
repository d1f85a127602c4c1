"""The formatting layer every chapter table goes through (ocular_utils.report.display)."""
import numpy as np
import pandas as pd
import pytest

from ocular_utils.report import display


def test_readable_has_no_index_column_and_words_for_booleans_and_missing_values():
    frame = pd.DataFrame({"eer": [0.0719, np.nan], "converged": [True, None], "images": [19200, 3],
                          "p": [0.0004, 0.2], "size": [1234.56, 0.012345]}, index=[3, 7])
    cells = display.readable(frame, percent=["eer"], p_values=["p"])
    assert list(cells.columns) == ["eer", "converged", "images", "p", "size"]
    assert cells.to_dict("list") == {"eer": ["7.19", "n/a"], "converged": ["yes", "n/a"], "images": ["19,200", "3"],
                                     "p": ["< 0.001", "0.200"], "size": ["1,235", "0.012"]}


def test_a_named_index_becomes_columns_and_multiindex_headers_are_joined():
    frame = pd.DataFrame({"median_ms": [1.0, 2.5], "label": ["a", "b"], "input": ["32x48"] * 2,
                          "runtime": ["eager", "onnx"]})
    table = frame.pivot_table(index="label", columns=["input", "runtime"], values="median_ms")
    cells = display.readable(table)
    assert list(cells.columns) == ["label", "32x48 eager", "32x48 onnx"]
    assert cells.iloc[0].tolist() == ["a", "1", "n/a"] and cells.iloc[1].tolist() == ["b", "n/a", "2.50"]
    counts = display.readable(pd.DataFrame({"images": [3072.0, np.nan], "rate": [50.0, 49.5]}))
    assert counts.to_dict("list") == {"images": ["3,072", "n/a"], "rate": ["50.00", "49.50"]}  # whole-number column


def test_an_estimate_and_its_interval_share_one_cell():
    frame = pd.DataFrame({"model": ["m"], "change (points)": [-1.234], "95% interval": ["[-2.00, -0.50]"],
                          "p": [0.01]})
    cells = display.readable(frame, joined={"change [95% CI]": ("change (points)", "95% interval")})
    assert list(cells.columns) == ["model", "change [95% CI]", "p"]
    assert cells.iloc[0, 1] == "-1.23 [-2.00, -0.50]"
    rise = display.readable(frame.assign(**{"change (points)": [1.5], "95% interval": ["[+0.28, +2.75]"]}),
                            joined={"change [95% CI]": ("change (points)", "95% interval")})
    assert rise.iloc[0, 1] == "+1.50 [+0.28, +2.75]", "a positive difference is signed like its interval"
    assert display.interval_cell(0.05, 0.04, 0.07) == "5.00 [4.00, 7.00]"
    assert display.interval_cell(0.01, -0.002, 0.02, signed=True) == "+1.00 [-0.20, +2.00]"
    assert display.interval_cell(np.nan, 0, 1) == display.MISSING_TEXT
    assert display.interval_text(-0.0123, 0.0456) == "[-1.23, +4.56]", "an interval alone: a difference's, signed"
    assert display.interval_text(1.5, 2.25, signed=False, scale=1) == "[1.50, 2.25]"


@pytest.mark.parametrize("value, text", [(None, "n/a"), (np.float64("nan"), "n/a"), (np.bool_(False), "no"),
                                         (3.0, "3.00"), (0.5, "0.500"), (12.3456, "12.35"), (512.3, "512.3"),
                                         (np.int64(25000), "25,000"), ("", "n/a"), ([1, "x"], "1, x")])
def test_cell_text(value, text):
    assert display.cell_text(value) == text


def test_show_renders_an_html_table_without_index_or_raw_missing_values():
    frame = pd.DataFrame({"a": [1.5, None], "b": [True, False]}, index=pd.Index([10, 11]))
    html = display.show(frame, title="t", wrap=["a"])._repr_html_()
    assert "<table" in html and "gt_table" in html
    body = html[html.index("<tbody"):]
    assert "<th" not in body.split("</tbody>")[0]
    for raw in (">None<", ">NaN<", ">nan<", ">True<", ">False<"):
        assert raw not in html
    assert "white-space: pre-line" in html


def test_a_list_of_notes_gives_one_source_note_line_each():
    frame = pd.DataFrame({"a": [1.0]})
    html = display.show(frame, note=["first run: machine A", "second run: machine B"])._repr_html_()
    assert html.count('class="gt_sourcenote"') == 2 and html.index("machine A") < html.index("machine B")
    assert display.show(frame, note="one line")._repr_html_().count('class="gt_sourcenote"') == 1


def test_comparison_table_puts_each_difference_and_its_interval_in_one_cell():
    from ocular_utils.report.comparison import COLUMNS, comparison_table

    row = dict.fromkeys(COLUMNS, np.nan) | {
        "finding": "best_method", "group": "layer_weight at 8x", "claim": "lower", "a": "layer_weight 8x",
        "b": "random 8x", "B difference": -16.34, "B low": -18.76, "B high": -14.18, "budget a": 3072,
        "budget b": 3072, "matched": True, "2B difference": -7.82, "2B low": -9.47, "2B high": -6.44}
    shown = comparison_table(pd.DataFrame([row]).assign(**{"B p_holm": 0.0001, "2B p_holm": 0.02}))
    assert shown.loc[0, "at B: a - b, points [95% CI]"] == "-16.34 [-18.76, -14.18]"
    assert shown.loc[0, "at B: p (Holm)"] == "< 0.001" and shown.loc[0, "at 2B: p (Holm)"] == "0.020"
    assert shown.loc[0, "training images (a / b)"] == "3,072 / 3,072"
    assert shown.loc[0, "claim"] == "a has lower EER than b" and shown.loc[0, "finding"].startswith("At the headline")


def test_phone_tables_match_kit_files_and_show_intervals():
    from ocular_utils.report import phone

    devices = pd.DataFrame({"model": ["q1-int8-32x48.pte", "other.pte", "q10-int8.pte"], "device": ["a", "b", "c"]})
    records = pd.DataFrame({"kind": ["quantize", "base"], "run": ["q1", "base"]})
    assert phone.measured_routes(devices, records)["model"].tolist() == ["q1-int8-32x48.pte"]
    verdict = {"table": pd.DataFrame([{"against": "x", "category": "pruning", "B difference": -0.01, "B low": -0.02,
                                       "B high": -0.001, "B p": 0.03, "2B difference": np.nan, "2B low": np.nan,
                                       "2B high": np.nan, "2B p": np.nan}])}
    shown = phone.verdict_comparisons(verdict)
    assert shown.iloc[0].tolist() == ["x", "pruning", "-1.00 [-2.00, -0.10]", "0.030", "n/a", "n/a"]
    assert phone.verdict_comparisons({"verdict": "no model"}).empty
