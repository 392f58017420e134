"""Writes the Avro fuzz seeds (fuzz/seeds/avro) with fastavro, an Avro writer independent of
the crate s3-importd reads with: the fuzz template's columns (id, price, name, ratio, ok, day,
at, tags, colour) in every codec, three rows with nulls.

    target/bench-venv/bin/python scripts/conformance/seeds.py
"""
import datetime
import decimal
import pathlib

import fastavro

out = pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "seeds" / "avro"
schema = fastavro.parse_schema({
    "type": "record", "name": "row", "fields": [
        {"name": "id", "type": "long"},
        {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}]},
        {"name": "name", "type": ["null", "string"]},
        {"name": "ratio", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "colour", "type": {"type": "enum", "name": "colour", "symbols": ["red", "green"]}},
        {"name": "blob", "type": ["null", "bytes"]},
        {"name": "props", "type": {"type": "map", "values": "long"}},
    ],
})
utc = datetime.timezone.utc
rows = [
    {"id": 1, "price": decimal.Decimal("1.50"), "name": "tea", "ratio": 0.5, "ok": True,
     "day": datetime.date(2024, 1, 1), "at": datetime.datetime(2024, 1, 1, 12, tzinfo=utc),
     "tags": ["a"], "colour": "red", "blob": b"\x00\xff", "props": {"k": 1}},
    {"id": 2, "price": None, "name": None, "ratio": -1.25, "ok": False,
     "day": datetime.date(1970, 1, 1), "at": datetime.datetime(1970, 1, 1, tzinfo=utc),
     "tags": [], "colour": "green", "blob": None, "props": {}},
    {"id": 3, "price": decimal.Decimal("-0.01"), "name": "pot", "ratio": 1e300, "ok": True,
     "day": datetime.date(2099, 12, 31), "at": datetime.datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=utc),
     "tags": ["b", "c"], "colour": "red", "blob": b"", "props": {"x": -2, "y": 3}},
]
for codec in ["null", "deflate", "snappy", "zstandard", "bzip2"]:
    with open(out / f"all-types-{codec}.avro", "wb") as f:
        fastavro.writer(f, schema, rows, codec=codec, sync_interval=64)
    print(out / f"all-types-{codec}.avro")
