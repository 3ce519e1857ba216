"""The one answer to "may this principal use this model on this provider?".

Grants are glob patterns (``*``, ``anthropic.claude-3-sonnet-*``, exact ids) on public model names,
each paired with a provider glob (``*`` = any provider). A principal is a key, possibly owned by a
user and/or a tenant; each of those three levels may carry grants. The rule, deny by default:

* the most general level present (the tenant if the key has one, else the user, else the key itself)
  must have a grant that allows the model on that provider; and
* every more specific level that has grants of its own must allow it too (they can only narrow).

So a key without grants inherits its tenant's; a tenant without grants allows nothing. The proxy's
inference path and ``/v1/models`` both call :meth:`Access.allows`, so they never disagree.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Access", "LevelGrants", "compile_access", "pattern_matches"]


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether the glob ``pattern`` matches ``name`` (case-insensitive, ``*`` and ``?``)."""
    return _compile(pattern).match(name) is not None


@dataclass(frozen=True, slots=True)
class LevelGrants:
    """The grants of one level: (model pattern, provider pattern) pairs; ``level`` names it for messages."""

    level: str
    grants: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _CompiledLevel:
    level: str
    rules: tuple[tuple[re.Pattern[str] | None, re.Pattern[str] | None], ...]

    def allows(self, model: str, provider: str) -> bool:
        for model_rx, provider_rx in self.rules:
            if (model_rx is None or model_rx.match(model)) and (
                provider_rx is None or provider_rx.match(provider)
            ):
                return True
        return False


@dataclass(slots=True)
class Access:
    """A principal's compiled grants with a memo of answers (principals are rebuilt when grants change)."""

    anchor: _CompiledLevel | None
    narrowing: tuple[_CompiledLevel, ...]
    _memo: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def denial(self, model: str, provider: str) -> str | None:
        """``None`` when allowed, else the name of the level that denies (``tenant``, ``user`` or ``key``)."""
        memo_key = (model, provider)
        try:
            return self._memo[memo_key]
        except KeyError:
            pass
        answer: str | None
        if self.anchor is None:
            answer = "grants"
        elif not self.anchor.allows(model, provider):
            answer = self.anchor.level
        else:
            answer = next((lvl.level for lvl in self.narrowing if not lvl.allows(model, provider)), None)
        if len(self._memo) < 4096:
            self._memo[memo_key] = answer
        return answer

    def allows(self, model: str, provider: str) -> bool:
        """Whether the principal may use ``model`` served by ``provider``."""
        return self.denial(model, provider) is None

    def allows_any(self, model: str, providers: Iterable[str]) -> bool:
        """Whether the principal may use ``model`` on at least one of ``providers``."""
        return any(self.allows(model, p) for p in providers)


def _compile_level(level: LevelGrants) -> _CompiledLevel:
    rules = tuple(
        (None if m == "*" else _compile(m), None if p == "*" else _compile(p)) for m, p in level.grants
    )
    return _CompiledLevel(level.level, rules)


def compile_access(levels: Sequence[LevelGrants | None]) -> Access:
    """Compile grants given from the most general level present to the most specific.

    ``levels`` is ``[tenant, user, key]`` with ``None`` for a level the principal does not have.
    """
    present = [lvl for lvl in levels if lvl is not None]
    if not present:
        return Access(anchor=None, narrowing=())
    anchor, *rest = present
    narrowing = tuple(_compile_level(lvl) for lvl in rest if lvl.grants)
    return Access(anchor=_compile_level(anchor), narrowing=narrowing)
