"""Audit: ``record()`` is the only writer of audit events; it writes in the caller's transaction."""

from portal.audit.service import Actor, record

__all__ = ["Actor", "record"]
