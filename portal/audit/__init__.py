"""Audit: ``record()`` is the only writer of audit events; it writes in the caller's transaction, and
the commit seals the event into the hash chain (``chain``); ``verify``, ``export`` and ``prune`` read
and shorten the chain without breaking it."""

from portal.audit.service import SYSTEM, Actor, record

__all__ = ["SYSTEM", "Actor", "record"]
