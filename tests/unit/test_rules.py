"""Rules: the pattern grammar, scope, windows, expiry and the precedence table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callshield.errors import RuleError
from callshield.numbers import Normalizer
from callshield.rules import PatternKind, Rule, RuleAction, RuleSet, RuleSpec, parse_pattern

NORMALIZER = Normalizer(default_region="US")
# Wednesday 2026-11-25 15:00 UTC = 10:00 in New York
WED_15_UTC = datetime(2026, 11, 25, 15, 0, tzinfo=UTC).timestamp()


def rule(action: str, pattern: str, source: str = "r", **kw: object) -> Rule:
    return Rule.compile(RuleSpec(action=RuleAction(action), pattern=pattern, **kw), source=source)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kind", "literal_digits"),
    [
        ("+14155550123", PatternKind.EXACT, 12),
        ("+1 (415) 555-0123", PatternKind.EXACT, 12),
        ("+1415555*", PatternKind.PREFIX, 7),
        ("+1415555??[0-4]*", PatternKind.WILDCARD, 7),
        ("+1415555[1,3,5]???", PatternKind.WILDCARD, 7),
        ("anonymous", PatternKind.KIND, 0),
        ("Withheld", PatternKind.KIND, 0),
        ("*", PatternKind.ANY, 0),
    ],
)
def test_pattern_grammar(text: str, kind: PatternKind, literal_digits: int) -> None:
    pattern = parse_pattern(text)
    assert pattern.kind is kind
    assert pattern.literal_digits == literal_digits


@pytest.mark.parametrize(
    "text",
    [
        "4155550123",
        "+1415*555",
        "+1415[5",
        "+1415[a-z]",
        "abc",
        "+" + "1" * 16,
        "+1415555*;DROP TABLE",
        "x" * 100,
        "",
    ],
)
def test_bad_patterns_are_rejected(text: str) -> None:
    with pytest.raises(RuleError):
        parse_pattern(text)


def test_wildcard_matches_digits_only() -> None:
    pattern = parse_pattern("+1415555??[0-4]*")
    assert pattern.matches(NORMALIZER.normalize("+14155550133"))
    assert not pattern.matches(NORMALIZER.normalize("+14155550153"))
    assert not pattern.matches(NORMALIZER.normalize("anonymous"))


# The precedence table: (rules, caller, callee, expected winner source or None)
PRECEDENCE = [
    # exact beats a longer-or-equal prefix, whatever the action
    (
        [("deny", "+1415555*", "prefix-deny"), ("allow", "+14155550123", "exact-allow")],
        "+14155550123",
        "",
        "exact-allow",
    ),
    (
        [("allow", "+1415555*", "prefix-allow"), ("deny", "+14155550123", "exact-deny")],
        "+14155550123",
        "",
        "exact-deny",
    ),
    # a longer prefix beats a shorter one
    ([("deny", "+1415*", "short"), ("allow", "+1415555*", "long")], "+14155550123", "", "long"),
    ([("allow", "+1415*", "short"), ("deny", "+1415555*", "long")], "+14155550123", "", "long"),
    # a wildcard with more literal digits beats a shorter prefix
    ([("deny", "+1415*", "prefix"), ("allow", "+14155550?2?", "wild")], "+14155550123", "", "wild"),
    # a number rule beats a kind rule beats the catch-all
    ([("deny", "*", "all"), ("allow", "+1*", "us")], "+14155550123", "", "us"),
    ([("deny", "*", "all"), ("allow", "anonymous", "anon")], "anonymous", "", "anon"),
    ([("deny", "anonymous", "anon")], "Restricted", "", None),
    # same pattern: DID-scoped beats global
    (
        [("deny", "+1415555*", "global"), ("allow", "+1415555*", "did", {"dids": ("+12125550100",)})],
        "+14155550123",
        "+12125550100",
        "did",
    ),
    (
        [("deny", "+1415555*", "global"), ("allow", "+1415555*", "did", {"dids": ("+12125550100",)})],
        "+14155550123",
        "+12125550199",
        "global",
    ),
    # DID patterns scope too
    (
        [("deny", "+1415555*", "did-range", {"dids": ("+1212555*",)})],
        "+14155550123",
        "+12125550150",
        "did-range",
    ),
    # tenant scope beats global
    (
        [("allow", "+1415555*", "global"), ("deny", "+1415555*", "tenant", {"tenants": ("acme",)})],
        "+14155550123",
        "",
        "tenant",
    ),
    # full tie: allow wins
    ([("deny", "+1415555*", "deny"), ("allow", "+1415555*", "allow")], "+14155550123", "", "allow"),
    ([("allow", "+1415555*", "allow"), ("deny", "+1415555*", "deny")], "+14155550123", "", "allow"),
    # a windowed rule beats an unwindowed one in its window, and is absent outside it
    (
        [
            ("allow", "*", "always"),
            ("deny", "*", "office", {"hours": "09:00-17:00", "timezone": "America/New_York"}),
        ],
        "+14155550123",
        "",
        "office",
    ),
    (
        [
            ("allow", "*", "always"),
            ("deny", "*", "night", {"hours": "18:00-08:00", "timezone": "America/New_York"}),
        ],
        "+14155550123",
        "",
        "always",
    ),
    ([("deny", "*", "weekend", {"days": ("sat", "sun")})], "+14155550123", "", None),
    ([("deny", "*", "wednesday", {"days": ("wed",)})], "+14155550123", "", "wednesday"),
    # expired rules never match
    (
        [("deny", "+14155550123", "expired", {"expires": datetime(2026, 1, 1, tzinfo=UTC)})],
        "+14155550123",
        "",
        None,
    ),
    (
        [("deny", "+14155550123", "future", {"expires": datetime(2027, 1, 1, tzinfo=UTC)})],
        "+14155550123",
        "",
        "future",
    ),
    # no rule for other numbers
    ([("deny", "+1415555*", "p")], "+12125550123", "", None),
]


@pytest.mark.parametrize(("rules", "caller", "callee", "winner"), PRECEDENCE)
def test_precedence(rules: list[tuple[object, ...]], caller: str, callee: str, winner: str | None) -> None:
    compiled = [rule(str(r[0]), str(r[1]), str(r[2]), **(r[3] if len(r) > 3 else {})) for r in rules]  # type: ignore[arg-type]
    for order in (compiled, list(reversed(compiled))):  # the order of the rules never matters
        found = RuleSet(order).match(
            NORMALIZER.normalize(caller),
            callee=NORMALIZER.normalize(callee).e164 if callee else None,
            tenant="acme" if any(r[2] == "tenant" for r in rules) else "",
            when=WED_15_UTC,
        )
        assert (found.source if found else None) == winner


def test_window_wrapping_midnight_belongs_to_the_start_day() -> None:
    night = rule("deny", "*", "fri-night", hours="22:00-06:00", days=("fri",), timezone="UTC")
    sat_3am = datetime(2026, 11, 28, 3, 0, tzinfo=UTC).timestamp()
    sun_3am = datetime(2026, 11, 29, 3, 0, tzinfo=UTC).timestamp()
    fri_23 = datetime(2026, 11, 27, 23, 0, tzinfo=UTC).timestamp()
    fri_12 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()
    assert night.applies(callee=None, tenant="", when=fri_23)
    assert night.applies(callee=None, tenant="", when=sat_3am)
    assert not night.applies(callee=None, tenant="", when=sun_3am)
    assert not night.applies(callee=None, tenant="", when=fri_12)


def test_conflicts_are_reported() -> None:
    rules = RuleSet([rule("deny", "+1415555*", "a"), rule("allow", "+1415555*", "b"), rule("deny", "+1212*", "c")])
    assert [(a.source, b.source) for a, b in rules.conflicts()] == [("a", "b")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("days", ("funday",)),
        ("hours", "9-5"),
        ("timezone", "Mars/Olympus"),
        ("cause", 500),
        ("dids", ("12345",)),
    ],
)
def test_spec_validation(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        RuleSpec(action=RuleAction.DENY, pattern="+1*", **{field: value})  # type: ignore[arg-type]


def test_many_rules_match_fast_path() -> None:
    rules = RuleSet(rule("deny", f"+1415555{i:04d}", f"r{i}") for i in range(10_000))
    info = NORMALIZER.normalize("+14155551234")
    found = rules.match(info, callee=None, tenant="", when=WED_15_UTC)
    assert found is not None and found.source == "r1234"
    assert rules.match(NORMALIZER.normalize("+14155561234"), callee=None, tenant="", when=WED_15_UTC) is None
