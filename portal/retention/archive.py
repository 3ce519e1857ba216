"""Retention archives: each batch of deleted rows as one gzipped JSON-lines file, written before the
delete (a failed write raises :class:`ArchiveError` and nothing is deleted).

File name: ``<table>-<UTC time>-<first>-<last>.jsonl.gz`` (first and last row id, or seq for audit
events). The file appears under its final name only once completely written and synced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ArchiveError", "write_archive"]


class ArchiveError(Exception):
    """The archive file could not be written; the batch it was for must not be deleted."""


def write_archive(directory: str, table: str, first: int, last: int, lines: Iterable[str]) -> Path:
    """Write ``lines`` (each ending in a newline) to a new archive file; returns its path."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = Path(directory).expanduser() / f"{table}-{stamp}-{first}-{last}.jsonl.gz"
    partial = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb") as packed:
                for line in lines:
                    packed.write(line.encode("utf-8"))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise ArchiveError(f"cannot write the archive {target}: {exc.strerror or exc}") from exc
    return target
