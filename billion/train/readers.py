"""Reading an uploaded training file within a budget: its size on disk, what it decodes to, its rows.

A small file can decode to a huge one: a 14 KB zstd Parquet file of one string repeated a million
times decoded to 916 MB, kept in the session that inspected it. So every reader here counts what
it produces and stops at the limits (billion.core.limits) before the next step would pay for more:

- the file as uploaded: at most limits.upload_bytes;
- `.gz` and `.zip` (one data file inside): decompressed in chunks, at most upload_decoded_bytes;
- Parquet: at most upload_rows rows (from its footer) and upload_decoded_bytes of values, counted
  batch by batch on the still dictionary-encoded columns, before any value becomes a Python string;
- JSON text: at most upload_decoded_bytes of estimated Python objects (each `{` or `[` becomes an
  object of ~64 bytes or more, so 50 MB of `{},` would be over a gigabyte of dicts).
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits

#: data files billion reads; each may also come gzipped (name.jsonl.gz) or as the one file in a .zip
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
#: Python's smallest container (an empty list is 56 bytes, an empty dict 64): what one `{` or `[`
#: of JSON text costs at least once parsed
_JSON_OBJECT_BYTES = 64
_CHUNK = 1 << 20


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**20:.1f} MB"


def data_name(path: Path) -> str:
    """The name that says the data format: "a.jsonl" for a.jsonl and a.jsonl.gz."""
    name = path.name
    return name[:-3] if name.lower().endswith(".gz") else name


def check_suffix(path: Path) -> None:
    name = path.name.lower()
    if name.endswith(".zip"):
        return
    if not Path(data_name(path)).suffix.lower() in DATA_SUFFIXES:
        kinds = ", ".join(DATA_SUFFIXES)
        raise BillionError(f"{path.name}: unsupported file type; use one of {kinds} (gzipped as "
                           f"name.jsonl.gz, or alone in a .zip).")


def read_upload(path: Path, max_bytes: int, limits: Limits = DEFAULT_LIMITS) -> tuple[str, bytes]:
    """(data file name, its bytes): the file itself, or decompressed within the budget."""
    check_suffix(path)
    if not path.is_file():
        raise BillionError(f"{path} does not exist: check the path.")
    size = path.stat().st_size
    if size > max_bytes:
        raise BillionError(f"{path.name} is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB "
                           "limit: split it or keep a sample of rows.")
    budget = limits.upload_decoded_bytes
    lower = path.name.lower()
    if lower.endswith(".gz"):
        return data_name(path), _gunzip(path, budget)
    if lower.endswith(".zip"):
        return _unzip(path, budget)
    return path.name, path.read_bytes()


def _too_big(name: str, budget: int) -> BillionError:
    return BillionError(f"{name} decompresses to more than {_mb(budget)}, this app's limit for one "
                        "dataset: split it or keep a sample of rows.")


def _gunzip(path: Path, budget: int) -> bytes:
    """The decompressed bytes, never holding more than budget + one chunk (a gzip bomb stops early)."""
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header, as the gzip module reads
    out = io.BytesIO()
    with path.open("rb") as fh:
        try:
            while chunk := fh.read(_CHUNK):
                while chunk:
                    out.write(inflate.decompress(chunk, _CHUNK))
                    if out.tell() > budget:
                        raise _too_big(path.name, budget)
                    chunk = inflate.unconsumed_tail
        except zlib.error as exc:
            raise BillionError(f"{path.name} is not a valid gzip file ({exc}).") from exc
    if not inflate.eof:
        raise BillionError(f"{path.name} is cut short (the gzip stream does not end): upload it again.")
    return out.getvalue()


def _unzip(path: Path, budget: int) -> tuple[str, bytes]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BillionError(f"{path.name} is not a valid zip file ({exc}).") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        data = [m for m in members if Path(m.filename).suffix.lower() in DATA_SUFFIXES]
        if len(data) != 1:
            raise BillionError(f"{path.name} must hold exactly one data file ({', '.join(DATA_SUFFIXES)}); "
                               f"it holds {len(data)}: zip one file, or upload it as it is.")
        member = data[0]
        name = Path(member.filename).name
        if member.file_size > budget:  # the header's claim; the read below does not trust it
            raise _too_big(name, budget)
        out = io.BytesIO()
        try:
            with archive.open(member) as fh:
                while chunk := fh.read(_CHUNK):
                    out.write(chunk)
                    if out.tell() > budget:
                        raise _too_big(name, budget)
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as exc:
            raise BillionError(f"{name} in {path.name} could not be read ({exc}).") from exc
    return name, out.getvalue()


def check_json_size(name: str, raw: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse JSON text whose parsed objects would pass upload_decoded_bytes (an upper estimate)."""
    containers = raw.count(b"{") + raw.count(b"[")
    estimate = len(raw) + _JSON_OBJECT_BYTES * containers
    if estimate > limits.upload_decoded_bytes:
        raise BillionError(f"{name} holds {containers:,} JSON objects and lists: read into memory that "
                           f"is about {_mb(estimate)}, over this app's {_mb(limits.upload_decoded_bytes)} "
                           "limit for one dataset. Split it or keep a sample of rows.")


def check_rows(name: str, rows: int, limits: Limits = DEFAULT_LIMITS) -> None:
    if rows > limits.upload_rows:
        raise BillionError(f"{name} has more than {limits.upload_rows:,} rows, this app's limit for one "
                           "dataset: keep a sample of rows.")


# ---- Parquet ---------------------------------------------------------------------------------------

def _decoded_bytes(array: Any) -> int:
    """Bytes an Arrow array takes once its dictionary-encoded strings are decoded (no decoding)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        lengths = pc.binary_length(array.dictionary)
        total = pc.sum(pc.take(lengths, array.indices)).as_py()
        return int(total or 0) + 8 * len(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _decoded_bytes(array.flatten()) + 8 * len(array)
    if pa.types.is_struct(kind):
        return sum(_decoded_bytes(field) for field in array.flatten())
    return array.nbytes


def parquet_records(name: str, raw: bytes, limits: Limits = DEFAULT_LIMITS) -> list[tuple[int, Any]]:
    """(row number, record) for every row, within upload_rows and upload_decoded_bytes."""
    if not raw.startswith(b"PAR1"):
        raise BillionError(f"{name} is not a Parquet file: export it again as Parquet, or use .jsonl.")
    import pyarrow.parquet as pq

    try:
        probe = pq.ParquetFile(io.BytesIO(raw))
        check_rows(name, probe.metadata.num_rows, limits)
        columns = [probe.schema.column(i) for i in range(len(probe.schema))]
        if sum(probe.metadata.row_group(g).total_byte_size
               for g in range(probe.metadata.num_row_groups)) > limits.upload_decoded_bytes:
            raise _too_big(name, limits.upload_decoded_bytes)
        # Strings stay dictionary-encoded until the budget says they may be decoded.
        parquet = pq.ParquetFile(io.BytesIO(raw), read_dictionary=[
            c.path for c in columns if c.physical_type == "BYTE_ARRAY"])
        records: list[tuple[int, Any]] = []
        decoded = 0
        for batch in parquet.iter_batches(batch_size=4096):
            decoded += sum(_decoded_bytes(column) for column in batch.columns)
            if decoded > limits.upload_decoded_bytes:
                raise _too_big(name, limits.upload_decoded_bytes)
            for row in batch.to_pylist():
                records.append((len(records) + 1, _plain(row)))
        check_rows(name, len(records), limits)
    except BillionError:
        raise
    except Exception as exc:  # pyarrow raises many types for damaged files
        raise BillionError(f"{name} could not be read as Parquet ({exc}).") from exc
    return records


def _plain(value: Any) -> Any:
    """Parquet cells as JSON would give them (bytes become text, timestamps strings)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(json.dumps(value, default=str))

