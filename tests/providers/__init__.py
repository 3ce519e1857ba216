"""Tests of the upstream provider adapters against the fake upstreams."""
