"""Tenants: creation, lookup, suspension, and their members."""
