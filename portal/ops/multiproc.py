"""Prometheus multiprocess mode for ``portal serve --workers N``: the shared directory and its upkeep.

prometheus_client decides at import time whether metrics live in per-process files: when
``PROMETHEUS_MULTIPROC_DIR`` is set. :func:`prepare` (run by ``portal serve`` before any worker
starts) creates a fresh private directory when several workers run and none was given, or empties
the given one, so counters never carry over from an earlier run. Each worker removes the live gauge
files of workers that are gone when it starts (:func:`forget_dead`) and its own when it stops
(:func:`mark_dead`), so ``portal_writer_queue_depth`` sums live processes only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = ["ENV", "cleanup", "forget_dead", "mark_dead", "prepare"]

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def prepare(workers: int) -> Path | None:
    """Set up the metrics directory for a server start; returns a directory created here (to remove
    at exit), or ``None``."""
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    if workers <= 1:
        return None
    created = Path(tempfile.mkdtemp(prefix="portal-metrics-"))
    os.environ[ENV] = str(created)
    return created


def cleanup(created: Path | None) -> None:
    """Remove a directory :func:`prepare` created."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        os.environ.pop(ENV, None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead() -> None:
    """Drop the live gauges of processes that no longer exist (a worker that crashed)."""
    path = os.environ.get(ENV)
    if not path:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        for name in os.listdir(path):
            match = _LIVE_FILE.match(name)
            if match and not _alive(int(match.group(1))):
                multiprocess.mark_process_dead(int(match.group(1)), path)  # type: ignore[no-untyped-call]


def mark_dead() -> None:
    """This process is stopping: its live gauges leave the sums."""
    path = os.environ.get(ENV)
    if path:
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
