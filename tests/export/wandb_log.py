"""Read a W&B transaction log (`run-<id>.wandb`) into wandb's own protobuf `Record`s.

The file is W&B's 7-byte header (`:W&B`, magic 0xBEE1, version 0) followed by LevelDB-log
blocks of 32 KiB; each fragment has a 7-byte header (crc32, length, type: full, first, middle,
last) and a block's tail shorter than a header is zero padding. The records themselves are
parsed by `wandb.proto.wandb_internal_pb2.Record`, so the test checks what W&B would sync.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = struct.Struct("<IHB")  # crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = data[:4], *struct.unpack("<HB", data[4:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, hex(magic), version)
    records, pending, offset = [], b"", 7
    while offset + HEADER.size <= len(data):
        room = BLOCK - offset % BLOCK
        if room < HEADER.size:  # zero padding up to the next block
            offset += room
            continue
        _crc, length, kind = HEADER.unpack_from(data, offset)
        if kind == 0 and length == 0:  # preallocated zeros at the end of the file
            break
        fragment = data[offset + HEADER.size : offset + HEADER.size + length]
        offset += HEADER.size + length
        if kind in (FULL, FIRST):
            pending = fragment
        else:
            assert kind in (MIDDLE, LAST), kind
            pending += fragment
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records
