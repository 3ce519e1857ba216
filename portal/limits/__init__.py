"""Limits: money budgets, token quotas and rate limits per key, user and tenant.

Definitions come from the database (cached with the principal); live counters sit in a backend:
in memory for one process, Redis (atomic Lua) for many. The proxy asks :class:`Limiter` to admit a
call (reserving its estimated cost and tokens at every level at once) and to settle it afterwards.
"""
