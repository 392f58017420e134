"""Hostile Parquet and Avro files for scripts/bench-hostile, written byte by byte (standard
library only): footers and headers that claim what the data does not hold.

    python3 scripts/lib/hostile_typed.py OUT_DIR

- rows-2e40.parquet: a footer claiming 2^40 rows (in its row group and in its column chunk).
- overflow.parquet: column chunk offsets and sizes of 2^63 - 1.
- nested-10000.parquet: a schema 10,000 groups deep.
- blocks-2e40.avro: a block claiming 2^40 records of 2^40 bytes.
- overflow.avro: a block whose length is 2^63 - 1, and a string whose length overflows.
- nested-10000.avro: a schema of arrays 10,000 deep.
- zero-width.avro: a block claiming 2^40 records of a schema whose records take no bytes.
"""
import json
import struct
import sys
from pathlib import Path

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)


def varint(n):
    b = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            b.append(byte | 0x80)
        else:
            b.append(byte)
            return bytes(b)


def zigzag(n):
    return varint((n << 1) ^ (n >> 63))


# Thrift compact protocol, as Parquet's footer is written.
I32, I64, BINARY, LIST, STRUCT = 5, 6, 8, 9, 12


class Struct:
    def __init__(self, *fields):
        self.fields = fields  # (id, type, value)

    def encode(self):
        b, last = bytearray(), 0
        for fid, ftype, value in self.fields:
            delta = fid - last
            if 0 < delta <= 15:
                b.append((delta << 4) | ftype)
            else:
                b.append(ftype)
                b += zigzag(fid)
            b += value_bytes(ftype, value)
            last = fid
        b.append(0)
        return bytes(b)


def value_bytes(ftype, value):
    if ftype in (I32, I64):
        return zigzag(value)
    if ftype == BINARY:
        data = value.encode() if isinstance(value, str) else value
        return varint(len(data)) + data
    if ftype == STRUCT:
        return value.encode()
    if ftype == LIST:
        etype, items = value
        head = bytes([(len(items) << 4) | etype]) if len(items) < 15 else bytes([0xF0 | etype]) + varint(len(items))
        return head + b"".join(value_bytes(etype, v) for v in items)
    raise ValueError(ftype)


def element(name, type_=None, repetition=None, children=None):
    fields = []
    if type_ is not None:
        fields.append((1, I32, type_))
    if repetition is not None:
        fields.append((3, I32, repetition))
    fields.append((4, BINARY, name))
    if children is not None:
        fields.append((5, I32, children))
    return Struct(*fields)


def parquet(path, schema, rows, row_groups):
    footer = Struct(
        (1, I32, 1),
        (2, LIST, (STRUCT, schema)),
        (3, I64, rows),
        (4, LIST, (STRUCT, row_groups)),
    ).encode()
    data = b"\0" * 64
    path.write_bytes(b"PAR1" + data + footer + struct.pack("<I", len(footer)) + b"PAR1")


def chunk(offset, num_values, size):
    meta = Struct(
        (1, I32, 2),  # INT64
        (2, LIST, (I32, [0])),  # PLAIN
        (3, LIST, (BINARY, ["id"])),
        (4, I32, 0),  # UNCOMPRESSED
        (5, I64, num_values),
        (6, I64, size),
        (7, I64, size),
        (9, I64, offset),
    )
    return Struct((2, I64, offset), (3, STRUCT, meta))


flat = [element("schema", children=1), element("id", type_=2, repetition=0)]
huge, top = 1 << 40, (1 << 63) - 1
parquet(out / "rows-2e40.parquet", flat, huge,
        [Struct((1, LIST, (STRUCT, [chunk(4, huge, 64)])), (2, I64, 64), (3, I64, huge))])
parquet(out / "overflow.parquet", flat, 1,
        [Struct((1, LIST, (STRUCT, [chunk(top, top, top)])), (2, I64, 64), (3, I64, 1))])
deep = [element("schema", children=1)]
deep += [element(f"g{i}", repetition=1, children=1) for i in range(10_000)]
deep.append(element("id", type_=2, repetition=1))
parquet(out / "nested-10000.parquet", deep, 0, [])


def avro(path, schema, blocks):
    sync = bytes(range(16))
    text = schema if isinstance(schema, str) else json.dumps(schema)
    meta = {"avro.schema": text.encode(), "avro.codec": b"null"}
    head = b"Obj\x01" + zigzag(len(meta))
    for k, v in meta.items():
        head += zigzag(len(k)) + k.encode() + zigzag(len(v)) + v
    head += zigzag(0) + sync
    path.write_bytes(head + b"".join(blocks(sync)))


record = {"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}, {"name": "s", "type": "string"}]}
avro(out / "blocks-2e40.avro", record, lambda sync: [zigzag(huge) + zigzag(huge) + b"\2" * 64 + sync])
# A record whose string claims 2^63 - 1 bytes, then a block that does.
overflowing = zigzag(1) + zigzag(top) + b"\0" * 2
avro(out / "overflow.avro", record,
     lambda sync: [zigzag(1) + zigzag(len(overflowing)) + overflowing + sync,
                   zigzag(1) + zigzag(top) + b"\0" * 8 + sync])
# Written as text: Python's own encoder stops at 1,000 levels.
nested = '{"type":"array","items":' * 10_000 + '"long"' + "}" * 10_000
avro(out / "nested-10000.avro", '{"type":"record","name":"r","fields":[{"name":"id","type":' + nested + "}]}",
     lambda sync: [zigzag(1) + zigzag(2) + b"\2\0" + sync])
# Records of a null field take no bytes: 2^40 of them fit in an empty block.
avro(out / "zero-width.avro", {"type": "record", "name": "r", "fields": [{"name": "a", "type": "null"}]},
     lambda sync: [zigzag(huge) + zigzag(0) + sync])
for name in ["rows-2e40.parquet", "overflow.parquet", "nested-10000.parquet", "blocks-2e40.avro", "overflow.avro",
             "nested-10000.avro", "zero-width.avro"]:
    print(out / name)
