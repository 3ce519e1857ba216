"""Audit: ``record()`` is the only writer of audit events; it writes in the caller's transaction."""

from portal.audit.service import SYSTEM, Actor, record

__all__ = ["SYSTEM", "Actor", "record"]
