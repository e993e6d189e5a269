"""Uploads read within a budget: what a file decodes to is counted before it is kept (issue 13, finding 2)."""

from __future__ import annotations

import gzip
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from billion.core.errors import BillionError
from billion.core.limits import Limits
from billion.train.data import SUFFIXES, load_dataset
from billion.train.readers import parquet_records

ROW = {"instruction": "Say hi like a pirate.", "output": "Ahoy there, matey!"}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def repeated_string_parquet(path: Path, rows: int, text: str) -> Path:
    """One string repeated: Parquet stores it once in a dictionary page, so the file stays tiny."""
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([text]))
    pq.write_table(pa.table({"text": column}), path, compression="zstd")
    return path


def test_the_finding_2_parquet_is_refused_from_its_footer(tmp_path):
    """A million rows of one string: a ~90 KB file that pandas decoded to 916 MB."""
    path = repeated_string_parquet(tmp_path / "bomb.parquet", 1_000_000, "All work and no play. " * 40)
    assert path.stat().st_size < 200_000
    started, before = time.perf_counter(), rss_bytes()
    with pytest.raises(BillionError, match="more than 100,000 rows"):
        load_dataset(path)
    assert time.perf_counter() - started < 5 and rss_bytes() - before < 100 * 2**20


def test_decoded_bytes_are_counted_before_strings_exist(tmp_path):
    """Under the row limit, the values' decoded size is counted on the dictionary-encoded columns."""
    path = repeated_string_parquet(tmp_path / "wide.parquet", 40_000, "x" * 8192)  # 312 MB decoded
    before = rss_bytes()
    with pytest.raises(BillionError, match="decompresses to more than 128 MB"):
        load_dataset(path)
    assert rss_bytes() - before < 100 * 2**20
    # The same shape within a smaller budget is read, nested columns included.
    small = repeated_string_parquet(tmp_path / "ok.parquet", 50, "hello")
    assert load_dataset(small).report.usable == 50
    with pytest.raises(BillionError, match="decompresses to more than"):
        parquet_records("ok.parquet", small.read_bytes(), Limits(upload_decoded_bytes=100))


def test_nested_parquet_columns_are_counted_too(tmp_path):
    turns = [{"role": "user", "content": "q" * 4096}, {"role": "assistant", "content": "a" * 4096}]
    pq.write_table(pa.Table.from_pylist([{"messages": turns}] * 2000), tmp_path / "m.parquet")
    raw = (tmp_path / "m.parquet").read_bytes()
    assert len(parquet_records("m.parquet", raw)) == 2000
    with pytest.raises(BillionError, match="decompresses to more than"):
        parquet_records("m.parquet", raw, Limits(upload_decoded_bytes=8 * 2**20))  # 16 MB of turns


def test_gzip_and_zip_uploads_are_read(tmp_path):
    lines = "".join(json.dumps(ROW) + "\n" for _ in range(5)).encode()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines))
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__MACOSX/._a.jsonl", b"junk")
        archive.writestr("folder/a.jsonl", lines)
    for name in ("a.jsonl.gz", "a.zip"):
        report = load_dataset(tmp_path / name).report
        assert (report.format, report.usable) == ("alpaca", 5)
    assert {".jsonl.gz", ".zip"} <= set(SUFFIXES)


def test_gzip_and_zip_bombs_stop_at_the_budget(tmp_path):
    zeros = b"0" * (64 * 2**20)  # 64 MB of one byte: ~65 KB compressed
    (tmp_path / "bomb.txt.gz").write_bytes(gzip.compress(zeros, compresslevel=9))
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.txt", zeros)
    del zeros
    small = Limits(upload_decoded_bytes=8 * 2**20)
    for name in ("bomb.txt.gz", "bomb.zip"):
        assert (tmp_path / name).stat().st_size < 2**20
        before = rss_bytes()
        with pytest.raises(BillionError, match="decompresses to more than 8 MB"):
            load_dataset(tmp_path / name, limits=small)
        assert rss_bytes() - before < 32 * 2**20, name


def test_damaged_archives_get_a_message(tmp_path):
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(json.dumps(ROW).encode() * 100)[:40])
    (tmp_path / "fake.zip").write_bytes(b"PK not really")
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as archive:
        archive.writestr("a.jsonl", b"{}")
        archive.writestr("b.jsonl", b"{}")
    for name, expected in (("cut.jsonl.gz", "cut short"), ("fake.zip", "not a valid zip"),
                           ("two.zip", "exactly one data file")):
        with pytest.raises(BillionError, match=expected):
            load_dataset(tmp_path / name)


def test_json_that_would_parse_into_millions_of_objects_is_refused(tmp_path):
    """50 MB of `{},` is ~17 million dicts (over a gigabyte); refused from the bytes."""
    (tmp_path / "objects.json").write_text("[" + ",".join(["{}"] * 3_000_000) + "]")
    before = rss_bytes()
    with pytest.raises(BillionError, match="JSON objects and lists"):
        load_dataset(tmp_path / "objects.json")
    assert rss_bytes() - before < 64 * 2**20


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".txt", ".json"])
def test_rows_are_limited_in_every_format(tmp_path, suffix):
    rows = [ROW] * 11
    path = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".csv":
        path.write_text("instruction,output\n" + "".join(f"{r['instruction']},{r['output']}\n" for r in rows))
    else:
        path.write_text("".join(f"line {i}\n" for i in range(11)))
    with pytest.raises(BillionError, match="more than 10 rows"):
        load_dataset(path, limits=Limits(upload_rows=10))
    assert load_dataset(path, limits=Limits(upload_rows=11)).report.usable == 11
