"""Spend: the batched writer of request logs, daily rollups and spend counters; chart queries."""
