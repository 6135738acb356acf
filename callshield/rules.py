"""Admin allow/deny rules: pattern grammar, scope, time windows, expiry and precedence.

Pattern grammar (one place):
    ``+14155550123``        exact E.164 number
    ``+1415555*``           prefix: every number starting with the digits before ``*``
    ``+1415555??[0-4]*``    wildcard: ``?`` any digit, ``[a-b]``/``[abc]`` a digit class, a trailing ``*``
    ``anonymous`` etc.      a caller kind without a number (see :class:`callshield.numbers.NumberKind`)
    ``*``                   every caller
Separators `` -().`` inside numbers are ignored (``-`` is a range inside a digit class).

Precedence rules (one place, :func:`Rule.rank`): the most specific matching rule wins:
    1. by pattern: exact > wildcard/prefix with more literal digits > kind > ``*``;
    2. then by scope: a DID-scoped rule > a tenant-scoped rule > a global rule;
    3. then a rule with a time window beats one without;
    4. on a full tie, ``allow`` wins (``config check`` reports such conflicts).
A rule outside its weekday/hour window or past its expiry does not match at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from callshield.errors import RuleError
from callshield.numbers import NumberInfo, NumberKind

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEPARATORS = str.maketrans("", "", " -().")
_SEPARATORS_KEEP_DASH = str.maketrans("", "", " ().")  # '-' is a range inside a digit class
_WILDCARD_CHARS = re.compile(r"^\+[0-9?\[\]\-,*]+$")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_KIND_NAMES = frozenset(k.value for k in NumberKind if k is not NumberKind.NUMBER)
MAX_PATTERN_LENGTH = 64


class RuleAction(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class PatternKind(StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    WILDCARD = "wildcard"
    KIND = "kind"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed number pattern."""

    text: str
    kind: PatternKind
    literal: str
    """Exact number, prefix digits (with ``+``), or the caller kind name."""
    regex: re.Pattern[str] | None = field(default=None, compare=False)
    literal_digits: int = 0

    def matches(self, info: NumberInfo) -> bool:
        e164 = info.e164
        if self.kind is PatternKind.ANY:
            return True
        if self.kind is PatternKind.KIND:
            return info.kind.value == self.literal
        if e164 is None:
            return False
        if self.kind is PatternKind.EXACT:
            return e164 == self.literal
        if self.kind is PatternKind.PREFIX:
            return e164.startswith(self.literal)
        assert self.regex is not None
        return self.regex.fullmatch(e164) is not None

    def matches_e164(self, e164: str | None) -> bool:
        """Match a bare number (a DID) against a number pattern."""
        if self.kind is PatternKind.ANY:
            return True
        if e164 is None or self.kind is PatternKind.KIND:
            return False
        if self.kind is PatternKind.EXACT:
            return e164 == self.literal
        if self.kind is PatternKind.PREFIX:
            return e164.startswith(self.literal)
        assert self.regex is not None
        return self.regex.fullmatch(e164) is not None


@lru_cache(maxsize=4096)
def parse_pattern(text: str) -> Pattern:
    """Parse a pattern (grammar in the module docstring); raise :class:`RuleError` if it is not one."""
    if len(text) > MAX_PATTERN_LENGTH:
        raise RuleError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    stripped = text.strip()
    if stripped == "*":
        return Pattern(text=stripped, kind=PatternKind.ANY, literal="*")
    if stripped.lower() in _KIND_NAMES:
        return Pattern(text=stripped.lower(), kind=PatternKind.KIND, literal=stripped.lower())
    compact = stripped.translate(_SEPARATORS_KEEP_DASH if "[" in stripped else _SEPARATORS)
    if not compact.startswith("+"):
        raise RuleError(
            f"pattern {stripped!r}: write numbers in E.164 form with a leading '+', e.g. +14155550123 "
            f"or +1415555*, or use one of: *, {', '.join(sorted(_KIND_NAMES))}"
        )
    body = compact[1:]
    if body.isdigit():
        if len(body) > 15:
            raise RuleError(f"pattern {stripped!r}: E.164 numbers have at most 15 digits")
        return Pattern(text=compact, kind=PatternKind.EXACT, literal=compact, literal_digits=len(body) + 1)
    if body.endswith("*") and body[:-1].isdigit() and body[:-1]:
        return Pattern(text=compact, kind=PatternKind.PREFIX, literal=compact[:-1], literal_digits=len(body) - 1)
    return _parse_wildcard(stripped, compact)


def _parse_wildcard(original: str, compact: str) -> Pattern:
    if not _WILDCARD_CHARS.match(compact) or "*" in compact[:-1]:
        raise RuleError(
            f"pattern {original!r}: only digits, '?', digit classes like [0-4] and one trailing '*' are allowed"
        )
    regex_parts = [r"\+"]
    literal_digits = 0
    body = compact[1:]
    i = 0
    while i < len(body):
        char = body[i]
        if char.isdigit():
            regex_parts.append(char)
            literal_digits += 1
        elif char == "?":
            regex_parts.append(r"\d")
        elif char == "*":
            regex_parts.append(r"\d*")
        elif char == "[":
            end = body.find("]", i)
            if end < 0:
                raise RuleError(f"pattern {original!r}: unclosed '['")
            regex_parts.append(_digit_class(original, body[i + 1 : end]))
            i = end
        else:
            raise RuleError(f"pattern {original!r}: unexpected {char!r}")
        i += 1
    regex = re.compile("".join(regex_parts))
    return Pattern(text=compact, kind=PatternKind.WILDCARD, literal=compact, regex=regex, literal_digits=literal_digits)


def _digit_class(original: str, content: str) -> str:
    if not re.fullmatch(r"(\d(-\d)?,?)+", content):
        raise RuleError(f"pattern {original!r}: bad digit class [{content}]")
    return "[" + content.replace(",", "") + "]"


def _parse_hours(text: str) -> tuple[time, time] | None:
    if not text:
        return None
    match = _HOURS.match(text.strip())
    if not match:
        raise RuleError(f"hours {text!r}: expected HH:MM-HH:MM, e.g. 09:00-17:30 (may wrap past midnight)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    return time(h1, m1), end


@lru_cache(maxsize=256)
def load_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleError(f"unknown timezone {name!r} (use an IANA name such as Europe/London)") from exc


class RuleSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One allow/deny entry as written in the config file (``[[rules]]``) or stored by the CLI."""

    action: RuleAction
    pattern: str
    dids: tuple[str, ...] = ()
    """Only for calls to these DIDs (patterns allowed); empty = every DID."""
    tenants: tuple[str, ...] = ()
    days: tuple[str, ...] = ()
    """Weekdays the rule is active (mon..sun); empty = every day."""
    hours: str = ""
    """Local time window ``HH:MM-HH:MM``; empty = all day."""
    timezone: str = "UTC"
    expires: datetime | None = None
    note: str = ""
    cause: int | None = None
    """Q.850 cause for a deny (default: policy.block_cause)."""

    def __post_init__(self) -> None:
        try:
            parse_pattern(self.pattern)
            for did in self.dids:
                parse_pattern(did)
            _parse_hours(self.hours)
            load_timezone(self.timezone)
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        bad_days = [d for d in self.days if d.lower() not in WEEKDAYS]
        if bad_days:
            raise ValueError(f"unknown weekday(s) {bad_days}: use {', '.join(WEEKDAYS)}")
        if self.cause is not None and not 1 <= self.cause <= 127:
            raise ValueError("cause must be a Q.850 cause code between 1 and 127")
        if self.cause is not None and self.action is RuleAction.ALLOW:
            raise ValueError("cause only applies to deny rules")


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule, ready to match."""

    spec: RuleSpec
    source: str
    """Where it came from, e.g. ``config:rules[2]`` or ``list:17``."""
    pattern: Pattern
    did_patterns: tuple[Pattern, ...]
    tenants: frozenset[str]
    weekdays: frozenset[int]
    hours: tuple[time, time] | None
    tz: ZoneInfo
    expires_at: float | None
    rank: tuple[int, int, int, int, int]
    """Specificity; higher wins (see :func:`_rank` and the module docstring)."""

    @classmethod
    def compile(cls, spec: RuleSpec, *, source: str) -> Rule:
        expires_at = None
        if spec.expires is not None:
            when = spec.expires if spec.expires.tzinfo else spec.expires.replace(tzinfo=UTC)
            expires_at = when.timestamp()
        pattern = parse_pattern(spec.pattern)
        dids = tuple(parse_pattern(d) for d in spec.dids)
        hours = _parse_hours(spec.hours)
        return cls(
            spec=spec,
            source=source,
            pattern=pattern,
            did_patterns=dids,
            tenants=frozenset(spec.tenants),
            weekdays=frozenset(WEEKDAYS.index(d.lower()) for d in spec.days),
            hours=hours,
            tz=load_timezone(spec.timezone),
            expires_at=expires_at,
            rank=_rank(spec, pattern, dids, hours),
        )

    @property
    def action(self) -> RuleAction:
        return self.spec.action

    @property
    def reason_code(self) -> str:
        """``allowlist:exact``, ``denylist:prefix``, ..."""
        side = "allowlist" if self.spec.action is RuleAction.ALLOW else "denylist"
        return f"{side}:{self.pattern.kind.value}"

    def applies(self, *, callee: str | None, tenant: str, when: float) -> bool:
        """Scope, expiry and time window (the number itself is matched by the index)."""
        if self.expires_at is not None and when >= self.expires_at:
            return False
        if self.did_patterns and not any(p.matches_e164(callee) for p in self.did_patterns):
            return False
        if self.tenants and tenant not in self.tenants:
            return False
        if self.hours or self.weekdays:
            return self._in_window(when)
        return True

    def _in_window(self, when: float) -> bool:
        local = datetime.fromtimestamp(when, self.tz)
        weekday = local.weekday()
        if self.hours is not None:
            start, end = self.hours
            now = local.time()
            if start <= end:
                if not start <= now < end:
                    return False
            elif now >= start:
                pass  # evening part of a window that wraps past midnight: same day
            elif now < end:
                weekday = (local - timedelta(days=1)).weekday()  # morning part belongs to yesterday's window
            else:
                return False
        return not self.weekdays or weekday in self.weekdays


_PATTERN_RANK = {
    PatternKind.EXACT: 4,
    PatternKind.PREFIX: 3,
    PatternKind.WILDCARD: 3,
    PatternKind.KIND: 2,
    PatternKind.ANY: 1,
}


def _rank(
    spec: RuleSpec, pattern: Pattern, dids: tuple[Pattern, ...], hours: tuple[time, time] | None
) -> tuple[int, int, int, int, int]:
    """The precedence rules of the module docstring as a sortable key; higher wins."""
    scope_rank = 2 if dids else 1 if spec.tenants else 0
    windowed = 1 if (hours or spec.days) else 0
    allow_first = 1 if spec.action is RuleAction.ALLOW else 0
    return _PATTERN_RANK[pattern.kind], pattern.literal_digits, scope_rank, windowed, allow_first


class RuleSet:
    """All rules of a node, indexed so a lookup costs a handful of dict probes."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules = list(rules)
        self._exact: dict[str, list[Rule]] = {}
        self._prefix: dict[str, list[Rule]] = {}
        self._kind: dict[str, list[Rule]] = {}
        self._scan: list[Rule] = []
        for rule in self._rules:
            pattern = rule.pattern
            if pattern.kind is PatternKind.EXACT:
                self._exact.setdefault(pattern.literal, []).append(rule)
            elif pattern.kind is PatternKind.PREFIX:
                self._prefix.setdefault(pattern.literal, []).append(rule)
            elif pattern.kind is PatternKind.KIND:
                self._kind.setdefault(pattern.literal, []).append(rule)
            else:
                self._scan.append(rule)
        self._prefix_lengths = sorted({len(p) for p in self._prefix}, reverse=True)

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules)

    def candidates(self, info: NumberInfo) -> list[Rule]:
        """Every rule whose pattern matches the caller, regardless of scope and time."""
        found: list[Rule] = []
        e164 = info.e164
        if e164 is not None:
            found.extend(self._exact.get(e164, ()))
            for length in self._prefix_lengths:
                if length <= len(e164):
                    found.extend(self._prefix.get(e164[:length], ()))
        else:
            found.extend(self._kind.get(info.kind.value, ()))
        found.extend(rule for rule in self._scan if rule.pattern.matches(info))
        return found

    def match(self, info: NumberInfo, *, callee: str | None, tenant: str, when: float) -> Rule | None:
        """The winning rule for this caller, or ``None``."""
        if not self._rules:
            return None
        best: Rule | None = None
        best_rank: tuple[int, ...] = ()
        for rule in self.candidates(info):
            if not rule.applies(callee=callee, tenant=tenant, when=when):
                continue
            rank = rule.rank
            if best is None or rank > best_rank:
                best, best_rank = rule, rank
        return best

    def conflicts(self) -> list[tuple[Rule, Rule]]:
        """Pairs of an allow and a deny with the same pattern and scope (the allow wins; worth a warning)."""
        seen: dict[tuple[object, ...], Rule] = {}
        pairs: list[tuple[Rule, Rule]] = []
        for rule in self._rules:
            spec = rule.spec
            key = (rule.pattern.text, spec.dids, spec.tenants, spec.days, spec.hours, spec.timezone)
            other = seen.get(key)
            if other is not None and other.action is not rule.action:
                pairs.append((other, rule))
            seen.setdefault(key, rule)
        return pairs
