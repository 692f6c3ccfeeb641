"""Read an offline W&B run's transaction log (``run-<id>.wandb``) back into dicts, for tests.

The log is a LevelDB-style record log: a 7-byte header, then 32 KiB blocks of records each
framed by crc32 (4 bytes), length (2, little-endian) and type (1: full, 2: first, 3: middle,
4: last); records are ``wandb_internal_pb2.Record`` protobufs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
FRAME = 7


def _payloads(data: bytes):
    offset, pending = HEADER, b""
    while offset + FRAME <= len(data):
        room = BLOCK - offset % BLOCK
        if room < FRAME:  # block trailer padding
            offset += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + FRAME])
        chunk = data[offset + FRAME : offset + FRAME + length]
        offset += FRAME + length
        if kind == 0 and length == 0:
            offset += BLOCK - offset % BLOCK if offset % BLOCK else 0
            continue
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def read_offline_run(run_dir: Path) -> dict:
    """{"config": {...}, "history": [{...}], "summary": {...}} of one offline run folder."""
    log = next(Path(run_dir).glob("run-*.wandb"))
    config: dict = {}
    history: list[dict] = []
    summary: dict = {}
    for payload in _payloads(log.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind in ("config", "run"):
            updates = record.config.update if kind == "config" else record.run.config.update
            for item in updates:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return {"config": config, "history": history, "summary": summary}
