"""Corpus records as JSON lines."""
from __future__ import annotations

import json
import os
from typing import Iterable

from larsight.events.formats.atomic import atomic_open


def write_jsonl(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write records as JSON lines, atomically (a reader sees the old file or the whole new
    one). Returns the number of records."""
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
