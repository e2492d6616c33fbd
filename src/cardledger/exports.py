"""Exports of journal records: CSV, JSON lines and Parquet, streamed batch by batch.

Every decided op, failed ones with their result code, selected by journal range or
by event time (a service day, or [start_us, end_us)). Columns are the journal's
fields (JOURNAL_DTYPE), amounts as integers; CSV and JSON lines add `time` (the event
time as ISO 8601 local time with its offset, in the export's time zone) and `result`
(the code's name). Parquet keeps the fields' own integer types; it needs pyarrow
(`pip install 'cardledger[parquet]'`). Memory stays that of one stored batch (for
Parquet, one row group). With the Cython core, CSV and JSON lines are written by its
`format_rows` (the same bytes as the writers here).

Until the journal has a time index, a selection by event time reads the whole journal
(the records of a late upload may sit anywhere in it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .days import SERVICE_TZ_DEFAULT, iso_times, iso_times_bytes
from .engine import select as engines
from .schema import JOURNAL_DTYPE, Result

#: The export formats.
FORMATS = ("csv", "jsonl", "parquet")
#: Records a row group of a Parquet export holds (the last one, fewer).
PARQUET_ROW_GROUP_RECORDS = 1 << 17
#: The columns of a CSV or JSON lines export, in order.
COLUMNS = (*JOURNAL_DTYPE.names, "time", "result")
_RESULT_NAMES = {int(r): r.name for r in Result}


def select(batches: Iterator[np.ndarray], start_us: int | None = None,
           end_us: int | None = None) -> Iterator[np.ndarray]:
    """The records of `batches` whose event time is in [start_us, end_us) (None: open)."""
    for recs in batches:
        keep = np.ones(len(recs), dtype=bool)
        if start_us is not None:
            keep &= recs["time_us"] >= start_us
        if end_us is not None:
            keep &= recs["time_us"] < end_us
        if keep.any():
            yield recs[keep]


def export(records: Iterator[np.ndarray], path: str | os.PathLike[str], fmt: str, *,
           tz: str = SERVICE_TZ_DEFAULT, progress: Callable[[int], None] | None = None) -> int:
    """Write the records (arrays of JOURNAL_DTYPE, in order) to `path` as `fmt`
    ("csv", "jsonl" or "parquet"); return how many were written. `progress(n)` is
    called with the running count after each array."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        return _parquet(records, path, progress)
    if engines.IMPLEMENTATION == engines.CYTHON:
        helper = engines.reports_for(None)
        return _text_core(records, path, fmt, tz, progress, helper.format_rows)
    if fmt == "csv" and _have_pyarrow():
        return _csv_arrow(records, path, tz, progress)
    if fmt == "jsonl" and _have_pyarrow():
        return _jsonl_arrow(records, path, tz, progress)
    written = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        if fmt == "csv":
            out.write(",".join(COLUMNS) + "\n")
        line = _CSV_LINE if fmt == "csv" else _JSON_LINE
        for recs in records:
            times = iso_times(recs["time_us"], tz)
            rows = recs.tolist()
            out.write("".join(line % (*row, t, _RESULT_NAMES.get(row[_CODE], str(row[_CODE])))
                              for row, t in zip(rows, times)))
            written += len(recs)
            if progress is not None:
                progress(written)
    return written


_CODE = JOURNAL_DTYPE.names.index("code")
# Every journal field is an integer: one format string writes a row.
_CSV_LINE = ",".join(["%d"] * len(JOURNAL_DTYPE.names) + ["%s", "%s"]) + "\n"
_JSON_LINE = "{" + ",".join([f'"{n}":%d' for n in JOURNAL_DTYPE.names] + ['"time":"%s"', '"result":"%s"']) + "}\n"


#: What `format_rows` writes around the fields, the time and the result of each line.
_TEXT_PARTS = {
    "csv": ([b""] + [b","] * (len(JOURNAL_DTYPE.names) - 1), b",", b",", b"\n"),
    "jsonl": ([f'{"{" if i == 0 else ","}"{n}":'.encode() for i, n in enumerate(JOURNAL_DTYPE.names)],
              b',"time":"', b'","result":"', b'"}\n'),
}


def _text_core(records: Iterator[np.ndarray], path: str | os.PathLike[str], fmt: str, tz: str,
               progress: Callable[[int], None] | None, format_rows: Callable[..., tuple]) -> int:
    """CSV or JSON lines written by the core's `format_rows` (the same text as the plain
    writer, tested), one buffer a batch."""
    prefixes, time_prefix, result_prefix, line_end = _TEXT_PARTS[fmt]
    names = [name.encode() for name in _RESULT_NAME_TABLE.tolist()]
    written = 0
    buf = None  # the lines' buffer, reused batch after batch
    with open(path, "wb") as out:
        if fmt == "csv":
            out.write((",".join(COLUMNS) + "\n").encode())
        for recs in records:
            buf, length = format_rows(recs, prefixes, time_prefix, iso_times_bytes(recs["time_us"], tz),
                                      result_prefix, names, line_end, buf)
            out.write(memoryview(buf)[:length])
            written += len(recs)
            if progress is not None:
                progress(written)
    return written


def _have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


_RESULT_NAME_TABLE = np.array([_RESULT_NAMES.get(i, str(i)) for i in range(max(_RESULT_NAMES) + 1)], dtype=object)


def _result_names(codes: np.ndarray) -> np.ndarray:
    out = np.empty(len(codes), dtype=object)
    known = codes < len(_RESULT_NAME_TABLE)
    out[known] = _RESULT_NAME_TABLE[codes[known]]
    out[~known] = [str(c) for c in codes[~known].tolist()]
    return out


def _csv_arrow(records: Iterator[np.ndarray], path: str | os.PathLike[str], tz: str,
               progress: Callable[[int], None] | None) -> int:
    """CSV through pyarrow's writer: the same columns and text as the plain writer."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    written = 0
    writer = None
    try:
        for recs in records:
            columns = {n: recs[n] for n in JOURNAL_DTYPE.names}
            columns["time"] = pa.array(iso_times_bytes(recs["time_us"], tz)).cast(pa.string())
            columns["result"] = _result_names(recs["code"])
            table = pa.table(columns)
            if writer is None:
                with open(path, "w", encoding="utf-8") as out:  # the header as the plain writer writes it
                    out.write(",".join(COLUMNS) + "\n")
                sink = pa.OSFile(str(path), "ab")
                writer = pacsv.CSVWriter(sink, table.schema, write_options=pacsv.WriteOptions(
                    include_header=False, quoting_style="none"))
            writer.write_table(table)
            written += len(recs)
            if progress is not None:
                progress(written)
        if writer is None:
            with open(path, "w", encoding="utf-8") as out:
                out.write(",".join(COLUMNS) + "\n")
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    return written


def _jsonl_arrow(records: Iterator[np.ndarray], path: str | os.PathLike[str], tz: str,
                 progress: Callable[[int], None] | None) -> int:
    """JSON lines built column by column with pyarrow's string kernels: the same text
    as the plain writer (every field an integer; time and result plain strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    written = 0
    with open(path, "wb") as out:
        for recs in records:
            parts: list = []
            for i, n in enumerate(JOURNAL_DTYPE.names):
                parts.append(pa.scalar(("{" if i == 0 else ",") + f'"{n}":'))
                parts.append(pc.cast(pa.array(recs[n]), pa.string()))
            parts.append(pa.scalar(',"time":"'))
            parts.append(pa.array(iso_times_bytes(recs["time_us"], tz)).cast(pa.string()))
            parts.append(pa.scalar('","result":"'))
            parts.append(pa.array(_result_names(recs["code"]).tolist(), type=pa.string()))
            parts.append(pa.scalar('"}\n'))
            lines = pc.binary_join_element_wise(*parts, "")
            # Every line ends with its newline: the array's character data is the file's
            # text, written as it is.
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
            out.write(memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
            written += len(recs)
            if progress is not None:
                progress(written)
    return written


def _parquet(records: Iterator[np.ndarray], path: str | os.PathLike[str],
             progress: Callable[[int], None] | None) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("Parquet export needs pyarrow: pip install 'cardledger[parquet]'") from None
    schema = pa.schema([(n, pa.from_numpy_dtype(JOURNAL_DTYPE[n])) for n in JOURNAL_DTYPE.names])
    written = 0
    # Batches are gathered into row groups of PARQUET_ROW_GROUP_RECORDS (a buffer a
    # column, reused): a row group a stored batch made small groups, slow to write and
    # to read.
    # Values are written plain (then compressed): trying a dictionary for every column,
    # most of them near unique, took most of the writer's time.
    room = PARQUET_ROW_GROUP_RECORDS
    columns = {n: np.empty(room, dtype=JOURNAL_DTYPE[n]) for n in JOURNAL_DTYPE.names}  # each column's buffer
    held = 0

    def flush() -> None:
        writer.write_table(pa.table({n: c[:held] for n, c in columns.items()}, schema=schema), row_group_size=room)

    with pq.ParquetWriter(str(path), schema, use_dictionary=False) as writer:
        for recs in records:
            taken = 0
            while taken < len(recs):
                k = min(len(recs) - taken, room - held)
                for n, c in columns.items():
                    c[held : held + k] = recs[n][taken : taken + k]
                held += k
                taken += k
                if held == room:
                    flush()
                    held = 0
            written += len(recs)
            if progress is not None:
                progress(written)
        if held:
            flush()
    return written


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON lines export (for tests and small scripts)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
