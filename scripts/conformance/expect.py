"""Writes what independent readers make of the vendored Parquet and Avro sample files, for
tests/conformance.rs to compare with: pyarrow for Parquet, fastavro for Avro.

    target/bench-venv/bin/python scripts/conformance/expect.py

For each file: the number of rows, the column names, and the first row's scalar values in the
form s3-importd delivers them (decimals as exact text, dates as ISO 8601 text, bytes as
base64, floats as numbers); nested values, timestamps and times are compared by count only.
A file the reader refuses is recorded with its error.
"""
import base64
import datetime
import decimal
import json
import math
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def scalar(v):
    """The value as s3-importd writes it, or None when it is not compared."""
    if isinstance(v, bool) or isinstance(v, int) or isinstance(v, str):
        return ("ok", v)
    if isinstance(v, float):
        return ("ok", v) if math.isfinite(v) else None
    if isinstance(v, decimal.Decimal):
        return ("ok", format(v, "f"))
    if isinstance(v, datetime.datetime) or isinstance(v, datetime.time):
        return None
    if isinstance(v, datetime.date):
        return ("ok", v.isoformat())
    if isinstance(v, (bytes, bytearray)):
        return ("ok", base64.b64encode(bytes(v)).decode())
    return None


def first_row(row):
    out = {}
    for k, v in row.items():
        if v is None:
            out[k] = None
            continue
        s = scalar(v)
        if s is not None:
            out[k] = s[1]
    return out


def parquet():
    import pyarrow.parquet as pq

    found = {}
    for path in sorted((root / "parquet-testing" / "data").glob("*.parquet")):
        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - any refusal is recorded
            found[path.name] = {"error": str(e)[:300]}
            continue
        try:
            # Only the first row is converted to Python, column by column: a column Python
            # cannot hold (nanoseconds, dates out of its range) is left out, not the file.
            first = {}
            for name in table.column_names if table.num_rows else []:
                try:
                    first.update(first_row({name: table.column(name)[0].as_py()}))
                except Exception:  # noqa: BLE001
                    pass
            found[path.name] = {
                "rows": table.num_rows,
                "columns": table.column_names,
                "first": first,
            }
        except Exception as e:  # noqa: BLE001
            found[path.name] = {"error": str(e)[:300]}
    return found


def avro():
    import fastavro

    found = {}
    for path in sorted((root / "avro" / "data").glob("*.avro")):
        try:
            with open(path, "rb") as f:
                reader = fastavro.reader(f)
                schema = reader.writer_schema
                rows = list(reader)
            columns = [f["name"] for f in schema["fields"]] if isinstance(schema, dict) and schema.get("type") == "record" else None
            found[path.name] = {
                "rows": len(rows),
                "columns": columns,
                "first": first_row(rows[0]) if rows and isinstance(rows[0], dict) else {},
            }
        except Exception as e:  # noqa: BLE001
            found[path.name] = {"error": (str(e) or type(e).__name__)[:300]}
    return found


for name, found in [("parquet-testing", parquet()), ("avro", avro())]:
    out = root / name / "expected.json"
    out.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(found)} files, {sum('error' in v for v in found.values())} refused", file=sys.stderr)
