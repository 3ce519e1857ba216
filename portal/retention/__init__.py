"""Retention: old request logs and (optionally) old audit events are deleted in bounded batches, each
batch archived first when an archive directory is set; rollups and spend totals are never deleted.

- :mod:`portal.retention.service`: one run (``portal retention run`` and the background task).
- :mod:`portal.retention.archive`: a batch written as gzipped JSON lines before it is deleted.
- :mod:`portal.retention.guard`: one instance at a time (a Redis lock, or a lease row in the database).
- :mod:`portal.retention.runner`: the periodic task every instance starts.
"""

from portal.retention.service import RetentionReport, TableReport, run_retention

__all__ = ["RetentionReport", "TableReport", "run_retention"]
