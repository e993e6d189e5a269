"""Precision choices and the measured rule behind "auto" on CPU."""

from __future__ import annotations

import dataclasses
import json

import pytest

from billion.core import precision
from billion.core.errors import BillionError
from billion.core.loading import LoadOptions
from billion.core.precision import (QualityRow, SpeedRow, choose_cpu_precision, load_quality, load_speed_only,
                                    options_for,
                                    precision_of, quality_rows, resolve_auto)


def rows(int8_acc: float, int4_acc: float, int8_speed: float = 30.0, int4_speed: float = 20.0):
    """Two models; fp32 at 40% with a [33%, 47%] interval."""
    out = []
    for model in ("a", "b"):
        out += [QualityRow(model, "fp32", "fp32", 0.40, 0.33, 0.47, 227, 10.0),
                QualityRow(model, "bf16", "bf16", 0.40, 0.33, 0.47, 227, 15.0),
                QualityRow(model, "int8", "int8 (w8a8)", int8_acc, 0.0, 1.0, 227, int8_speed),
                QualityRow(model, "int4", "int4 (w4)", int4_acc, 0.0, 1.0, 227, int4_speed)]
    return tuple(out)


def test_auto_picks_the_fastest_precision_inside_fp32s_interval():
    choice = choose_cpu_precision(rows(0.38, 0.41))
    assert choice.precision == "int8" and "3.0x" in choice.reason and "fp32 40.0%" in choice.reason


def test_a_precision_outside_the_interval_is_skipped():
    assert choose_cpu_precision(rows(0.20, 0.41)).precision == "int4"
    # Outside on one model is enough to rule it out.
    mixed = tuple(r if not (r.model == "b" and r.precision == "int8")
                  else QualityRow("b", "int8", "", 0.10, 0, 1, 227, 30.0) for r in rows(0.40, 0.20))
    assert choose_cpu_precision(mixed).precision == "bf16"


def test_without_measurements_auto_stays_fp32():
    assert choose_cpu_precision(()).precision == "fp32"
    slower = rows(0.40, 0.40, int8_speed=5.0, int4_speed=5.0)
    slower = tuple(r for r in slower if r.precision != "bf16")
    assert choose_cpu_precision(slower).precision == "fp32"


def test_quality_file_round_trip_and_damage(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"rows": [r.__dict__ for r in rows(0.38, 0.30)]}))
    assert load_quality(path) == rows(0.38, 0.30)
    assert load_quality(tmp_path / "missing.json") == ()
    path.write_text("{}")
    with pytest.raises(BillionError, match="precision_quality"):
        load_quality(path)
    cells = quality_rows(rows(0.38, 0.30))
    int8 = next(c for c in cells if c[0] == "a" and c[1] == "int8")
    assert int8[6] == -2.0 and int8[7] == "yes" and int8[8] is None and int8[11] == "3.00x"


def test_a_precision_that_leaves_fp32s_next_token_too_often_is_skipped():
    # The suite's interval passes both; int4 agrees with fp32's next token on 92% of one model's text.
    def agreeing(row: QualityRow) -> QualityRow:
        top1 = {"int8": 0.99, "int4": 0.92 if row.model == "b" else 0.97}.get(row.precision)
        return dataclasses.replace(row, top1_agreement=top1, mean_kl=None if top1 is None else 0.01)

    measured = tuple(agreeing(r) for r in rows(0.38, 0.41, int8_speed=30.0, int4_speed=40.0))
    choice = choose_cpu_precision(measured)
    assert choice.precision == "int8" and "top-1 = fp32 on 99.0%" in choice.reason
    int4 = next(c for c in quality_rows(measured) if c[0] == "b" and c[1] == "int4")
    assert int4[8] == 92.0 and int4[9] == 0.01
    assert choose_cpu_precision(rows(0.38, 0.41, int8_speed=30.0, int4_speed=40.0)).precision == "int4"


def test_options_for_each_precision(monkeypatch):
    assert options_for("int8") == LoadOptions(quantization="int8")
    assert options_for("bf16") == LoadOptions(dtype="bf16")
    monkeypatch.setattr(precision, "auto_cpu_choice", lambda: precision.AutoChoice("int4", "test"))
    assert options_for("auto") == LoadOptions(quantization="int4")
    assert resolve_auto(LoadOptions()) == LoadOptions(quantization="int4")
    assert resolve_auto(LoadOptions(dtype="fp32")) == LoadOptions(dtype="fp32")
    assert precision_of(LoadOptions(quantization="int8")) == "int8"
    with pytest.raises(BillionError, match="precision"):
        options_for("int3")


def test_committed_quality_file_parses_and_names_its_source():
    if not precision.QUALITY_FILE.is_file():
        pytest.skip("no measured precision-quality file yet")
    data = json.loads(precision.QUALITY_FILE.read_text())
    assert data["source"] and data["machine"] and data["date"]
    assert {r.precision for r in load_quality()} >= {"fp32", "int8", "int4"}
    assert all(r.top1_agreement is not None for r in load_quality() if r.precision in ("int8", "int4"))


def test_models_without_an_fp32_row_do_not_count():
    partial = rows(0.38, 0.41) + (QualityRow("c", "int8", "int8", 0.05, 0.0, 0.1, 227, 30.0),)
    assert choose_cpu_precision(partial).precision == "int8"
    cell = next(c for c in quality_rows(partial) if c[0] == "c")
    assert cell[7] == "fp32 not measured" and cell[6] is None


def test_speed_only_rows_count_in_the_speed_rule(tmp_path):
    # Quality says both qualify and int4 is faster on the small models; the 1B-class speed-only rows
    # (random weights) make int8 the faster on average, so auto follows them.
    quality = rows(0.38, 0.38, int8_speed=30.0, int4_speed=35.0)
    assert choose_cpu_precision(quality).precision == "int4"
    big = (SpeedRow("big", "fp32", 4.0), SpeedRow("big", "int8", 14.0), SpeedRow("big", "int4", 8.0))
    choice = choose_cpu_precision(quality, big)
    assert choice.precision == "int8" and "mean over 3 models" in choice.reason
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"rows": [r.__dict__ for r in quality], "speed_only": [r.__dict__ for r in big]}))
    assert load_speed_only(path) == big
    assert load_speed_only(tmp_path / "missing.json") == ()
