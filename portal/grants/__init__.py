"""Grants: the one place that answers "may this principal use this model?"."""
