"""Where portal's non-Python resources live: templates, static files and migrations.

In a source checkout (or an editable install) they sit at the repository root; in a built wheel they
are packed under ``portal/_resources``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MIGRATIONS_DIR", "STATIC_DIR", "TEMPLATES_DIR"]

_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE / "_resources" if (_PACKAGE / "_resources").is_dir() else _PACKAGE.parent

MIGRATIONS_DIR = _ROOT / "migrations"
TEMPLATES_DIR = _ROOT / "templates"
STATIC_DIR = _ROOT / "static"
