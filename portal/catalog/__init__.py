"""Catalog: models, deployments and encrypted provider credentials."""
