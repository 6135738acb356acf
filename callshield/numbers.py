"""Caller-ID normalization: any string a trunk delivers becomes one frozen :class:`NumberInfo`.

Trunks deliver caller IDs as E.164 (``+14155550123``), national digits (``4155550123``), Asterisk's
``"Name" <number>`` form, SIP/TEL URIs, CNAM-style words (``anonymous``, ``Restricted``, ``OUT OF AREA``)
or junk. :class:`Normalizer` turns each into a :class:`NumberKind` plus, for numbers, the E.164 string,
an integer storage key and the facts the rules need (validity, type, region, neighbour-spoofing prefix).
``phonenumbers`` (libphonenumber) does the numbering-plan work; results are cached per (raw, region).

Decisions worth knowing:

- Inputs longer than 256 characters are ``TOO_LONG`` without being parsed or cached, so a hostile
  megabyte string costs O(1) and cannot fill the cache with huge keys.
- Letters in the number part make it ``INVALID`` unless the whole text is a known word phrase:
  ``phonenumbers`` would read vanity numbers (``1800FLOWERS``) but no trunk delivers those.
- ``0044 20 7946 0958`` with region ``US`` is ``TOO_LONG``: ``00`` is not the US international prefix
  (``011`` is), so libphonenumber reads 13 national digits for NANP, more than its 10.
- Numbers of a possible length that are not valid (``+15555550123``) are still ``NUMBER`` with an
  E.164 and a key, ``valid=False``: spoofers use them and reputation must match them.
- ``restricted`` reflects only the presentation indicator (``agi_callingpres``), never the words.

Measured with ``timeit`` (best of 7; CPython 3.11, phonenumbers 9.0.43, development machine):

- normalize() cache hit: ~0.17 µs; with a restricted presentation ~3 µs (``msgspec.structs.replace``).
- normalize() cache miss: NANP number ~35-40 µs; GB mobile ~45 µs; GB geographic ~90 µs (the area
  code lookup); short code ~16 µs; words and junk ~6 µs; a 1 MB string ~2 µs (never scanned).
  The first parse for a region also loads its metadata (a few ms, once).
- fast_key(): ~0.3 µs (0.1 µs for junk). On the first 50,000 FTC complaint rows it answers 99.1%;
  a sweep of NPA 200-999 x NXX 000-999 in three forms (2.4 M strings) matched normalize() exactly.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import unquote

import msgspec
import phonenumbers
from msgspec.structs import replace
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType, ValidationResult, shortnumberinfo
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import _number_type_helper

__all__ = ["PRESENTATION_NAMES", "Normalizer", "NumberInfo", "NumberKind", "fast_key", "parse_presentation"]

_log = logging.getLogger(__name__)

_SCAN_LIMIT: Final = 256
"""Longer inputs are TOO_LONG without parsing; a caller-ID field never legitimately gets near it."""
_RAW_KEEP: Final = 64
_MAX_E164_DIGITS: Final = 15
_MAX_NATIONAL_DIGITS: Final = 20
"""Digits without '+': an international prefix (up to 4 digits, e.g. 0011) plus at most 15."""
_REPLACEMENT_CHAR: Final = "\ufffd"

_NANP_COUNTRY_CODE: Final = 1
_NANP_E164_LENGTH: Final = 12  # '+1' and 10 digits
_NANP_KEY_OFFSET: Final = 10**10  # the key of +1 followed by ten zeros
_NANP_REGIONS: Final = frozenset(
    {"AG", "AI", "AS", "BB", "BM", "BS", "CA", "DM", "DO", "GD", "GU", "JM", "KN",
     "KY", "LC", "MP", "MS", "PR", "SX", "TC", "TT", "US", "VC", "VG", "VI"}
)  # fmt: skip
"""Regions of country code 1 (the test suite checks this against phonenumbers' metadata)."""

_NUMBER_TYPE_NAMES: Final[dict[int, str]] = {
    value: name.lower() for name, value in vars(PhoneNumberType).items() if name.isupper() and isinstance(value, int)
}

_URI_SCHEMES: Final = ("sip:", "sips:", "tel:")
_SEPARATORS: Final = frozenset(" \t-./()[]\u00a0\u2010\u2011\u2012\u2013\u2014\u2212\u3000")
_PLUS_SIGNS: Final = frozenset("+\uff0b")
_WORD_RE: Final = re.compile(r"[a-z]+")
_URI_PARAMETERS_RE: Final = re.compile(r"[;?]")


class NumberKind(StrEnum):
    """What a caller-ID string turned out to be."""

    NUMBER = "number"
    """Parsed to E.164 (valid or not, see :attr:`NumberInfo.valid`)."""
    ANONYMOUS = "anonymous"
    WITHHELD = "withheld"
    """Words like 'Restricted', 'Private', 'withheld'; also presentation prohibited without a number."""
    UNAVAILABLE = "unavailable"
    """Empty, 'unknown', 'Unavailable', 'OUT OF AREA', 'WIRELESS CALLER' and similar CNAM-style words."""
    SHORT_CODE = "short_code"
    """A possible short number of the region: 911, 112, 999, 611, 5-6 digit SMS codes."""
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    INVALID = "invalid"
    """Junk: not a number (letters, punctuation only, control characters...)."""


_WORD_PHRASES: Final[dict[str, NumberKind]] = {
    **dict.fromkeys(
        ("anonymous", "anonymous caller", "anonymous call", "anon"),
        NumberKind.ANONYMOUS,
    ),
    **dict.fromkeys(
        (
            "restricted", "restricted number", "restricted caller", "private", "private number",
            "private caller", "private name", "withheld", "number withheld", "withheld number",
            "caller id withheld", "id withheld", "blocked", "blocked number", "blocked caller",
            "caller id blocked", "callerid blocked", "hidden", "hidden number", "prohibited",
            "presentation restricted", "presentation prohibited", "confidential", "suppressed",
        ),
        NumberKind.WITHHELD,
    ),
    **dict.fromkeys(
        (
            "unknown", "unknown number", "unknown caller", "unknown name", "unavailable", "unavail",
            "number unavailable", "not available", "out of area", "outofarea", "out of area caller",
            "wireless caller", "wireless", "cell phone", "cellular caller", "no caller id",
            "no callerid", "no number", "none", "null", "pay phone", "payphone", "international",
        ),
        NumberKind.UNAVAILABLE,
    ),
}  # fmt: skip
"""Phrases (lower-case letters, words joined by one space) that mean 'no number' of a given kind."""

_PRESENTATION_RESTRICTION_MASK: Final = 0x60
_PRESENTATION_RESTRICTED: Final = 0x20
_PRESENTATION_UNAVAILABLE: Final = 0x40
_PRESENTATION_MAX: Final = 0x7F
PRESENTATION_NAMES: Final[dict[str, int]] = {
    "allowed_not_screened": 0,
    "allowed_passed_screen": 1,
    "allowed_failed_screen": 2,
    "allowed": 3,
    "prohib_not_screened": 32,
    "prohib_passed_screen": 33,
    "prohib_failed_screen": 34,
    "prohib": 35,
    "unavailable": 67,
}
"""Asterisk's names for ``CALLERPRES()``/config values (main/callerid.c)."""


class NumberInfo(msgspec.Struct, frozen=True, gc=False):
    """The normalized form of one caller-ID string (a frozen record, invisible to the GC: the
    normalizer caches hundreds of thousands of them).

    Invariant: ``kind is NUMBER`` ⇔ ``e164 is not None`` ⇔ ``key is not None``, and
    ``key == int(e164[1:])``.
    """

    raw: str
    """The input cut to 64 characters, non-printable characters replaced by U+FFFD: safe to log."""
    kind: NumberKind
    e164: str | None
    key: int | None
    """``int(e164[1:])``: the storage key."""
    valid: bool
    """``phonenumbers.is_valid_number``."""
    number_type: str
    """Lower-case ``PhoneNumberType`` name: 'fixed_line', 'mobile', 'toll_free', ..., 'unknown'."""
    region: str | None
    """Region of the number ('US', 'GB', '001' for non-geographic codes such as +800), if known."""
    country_code: int | None
    exchange: int | None
    """Neighbour-spoofing prefix as an int: NANP cc+NPA+NXX (``int(e164[1:8])``); elsewhere
    cc + geographic area code + 2 digits for geographic numbers; else None."""
    restricted: bool
    """Presentation restricted (``agi_callingpres`` 32-35)."""

    @property
    def is_number(self) -> bool:
        """Whether this is a number with an E.164 form."""
        return self.kind is NumberKind.NUMBER

    def label(self) -> str:
        """The E.164 for numbers, else the kind's value: for logs and the audit trail."""
        return self.e164 if self.e164 is not None else self.kind.value


@dataclass(frozen=True, slots=True)
class _Digits:
    """The significant characters of a number-looking string."""

    digits: str  # ASCII digits only
    international: bool  # written with a leading '+'


class Normalizer:
    """Cached normalizer; one per process."""

    def __init__(self, *, default_region: str = "US", cache_size: int = 262_144) -> None:
        region = default_region.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"unknown region code {default_region!r}: expected an ISO 3166-1 alpha-2 region "
                "that phonenumbers supports, such as 'US' or 'GB'"
            )
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self._default_region = region
        self._region_overrides: dict[str, str] = {}
        self._classify = functools.lru_cache(maxsize=cache_size)(_classify)
        self._is_emergency = functools.lru_cache(maxsize=4096)(_is_emergency)

    def normalize(self, raw: str, *, region: str | None = None, presentation: int | None = None) -> NumberInfo:
        """Normalize one caller-ID string; never raises.

        ``region`` overrides the default region for national numbers (e.g. per trunk); an unknown
        region falls back to the default. ``presentation`` is the numeric ``agi_callingpres``
        (see :func:`parse_presentation`).
        """
        if len(raw) > _SCAN_LIMIT:
            info = _without_number(raw, NumberKind.TOO_LONG)
        else:
            info = self._classify(raw, self._region(region))
        if presentation is None or (presentation & _PRESENTATION_RESTRICTION_MASK) == 0:
            return info
        return _apply_presentation(info, presentation)

    def is_emergency(self, raw: str, *, region: str | None = None) -> bool:
        """Whether ``raw`` is an emergency number of the region (911 in US; 112 and 999 in GB)."""
        if len(raw) > _SCAN_LIMIT:
            return False
        return self._is_emergency(raw, self._region(region))

    def cache_stats(self) -> tuple[int, int]:
        """(hits, misses) of the normalize() cache."""
        info = self._classify.cache_info()
        return info.hits, info.misses

    def _region(self, region: str | None) -> str:
        if region is None or region == self._default_region:
            return self._default_region
        resolved = self._region_overrides.get(region)
        if resolved is None:
            resolved = self._resolve_region(region)
        return resolved

    def _resolve_region(self, region: str) -> str:
        candidate = region.strip().upper()
        if candidate in phonenumbers.SUPPORTED_REGIONS:
            resolved = candidate
        else:
            resolved = self._default_region
            _log.warning("unknown region %r, using default region %s", region[:16], resolved)
        # Regions come from configuration, so this stays small; the bound guards against misuse.
        if len(self._region_overrides) < 1024:
            self._region_overrides[region] = resolved
        return resolved


def fast_key(raw: str, region: str) -> int | None:
    """Fast path for bulk imports: the key :meth:`Normalizer.normalize` would give, or None.

    Handles only trivial forms whose answer is certain: ``+1`` and 10 digits (any region), and, when
    ``region`` is a NANP region, 10 national digits or ``1`` and 10 digits. The area code must start
    with 2-9. None means 'not sure': call normalize(). Pure string operations, no phonenumbers.
    """
    text = raw.strip()
    length = len(text)
    if length == 12 and text[:2] == "+1":
        national = text[2:]
    elif region not in _NANP_REGIONS:
        return None
    elif length == 10:
        national = text
    elif length == 11 and text[0] == "1":
        national = text[1:]
    else:
        return None
    # isascii() first: isdigit() alone accepts other scripts' digits, which int() would convert.
    if national.isascii() and national.isdigit() and national[0] >= "2":
        return _NANP_KEY_OFFSET + int(national)
    return None


def parse_presentation(value: str | int | None) -> int | None:
    """Parse an ``agi_callingpres`` value ('32', ' 0', 32, or an Asterisk name like 'prohib').

    Returns the number (0-127) or None for missing or unusable values.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        if len(text) > 24:
            return None
        if text.isascii() and text.isdigit():
            number = int(text)
        else:
            return PRESENTATION_NAMES.get(text.lower())
    return number if 0 <= number <= _PRESENTATION_MAX else None


def _apply_presentation(info: NumberInfo, presentation: int) -> NumberInfo:
    if not 0 <= presentation <= _PRESENTATION_MAX:
        return info
    restriction = presentation & _PRESENTATION_RESTRICTION_MASK
    if restriction == _PRESENTATION_RESTRICTED:
        # Real Asterisk with 'Privacy: id' still delivers the number: keep it, flag it.
        no_number = info.kind in (NumberKind.UNAVAILABLE, NumberKind.INVALID)
        return replace(info, kind=NumberKind.WITHHELD if no_number else info.kind, restricted=True)
    if restriction == _PRESENTATION_UNAVAILABLE and info.kind is NumberKind.INVALID:
        return replace(info, kind=NumberKind.UNAVAILABLE)
    return info  # 0x60 is reserved: ignored


def _classify(raw: str, region: str) -> NumberInfo:
    extracted = _extract(raw)
    if isinstance(extracted, NumberKind):
        return _without_number(raw, extracted)
    return _from_digits(raw, extracted, region)


def _is_emergency(raw: str, region: str) -> bool:
    extracted = _extract(raw)
    if isinstance(extracted, NumberKind) or extracted.international:
        return False
    return bool(shortnumberinfo.is_emergency_number(extracted.digits, region))


def _safe_raw(raw: str) -> str:
    cut = raw[:_RAW_KEEP]
    if cut.isprintable():
        return cut
    return "".join(char if char.isprintable() else _REPLACEMENT_CHAR for char in cut)


def _without_number(raw: str, kind: NumberKind) -> NumberInfo:
    return NumberInfo(
        raw=_safe_raw(raw),
        kind=kind,
        e164=None,
        key=None,
        valid=False,
        number_type="unknown",
        region=None,
        country_code=None,
        exchange=None,
        restricted=False,
    )


# --- from text to digits ------------------------------------------------------------------------


def _extract(raw: str) -> NumberKind | _Digits:
    """The digits of the number part of ``raw`` (at most _SCAN_LIMIT chars), or the kind it is."""
    candidate = _strip_uri(_callerid_number(raw.strip())).strip()
    if not candidate:
        return NumberKind.UNAVAILABLE
    if any(char.isalpha() for char in candidate):
        if any(char.isdecimal() for char in candidate):
            return NumberKind.INVALID
        return _WORD_PHRASES.get(_phrase(candidate), NumberKind.INVALID)
    return _compact(candidate) or NumberKind.INVALID


def _phrase(text: str) -> str:
    return " ".join(_WORD_RE.findall(text.lower()))


def _callerid_number(text: str) -> str:
    """The number part of an Asterisk caller-ID string; the name when there is no number part.

    A name stands in when it may carry the answer ('anonymous', 'sip:...'); for ``"Name" <>``
    (a name and an explicitly empty number) the result is empty.
    """
    name, number = _split_callerid(text)
    if number:
        return number
    if number is not None and _phrase(name or "") not in _WORD_PHRASES:
        return ""
    return name or ""


def _split_callerid(text: str) -> tuple[str | None, str | None]:
    """Split an Asterisk caller-ID string into (name, number) with ``ast_callerid_parse``'s rules.

    Handles ``"name" <number>``, ``name <number>``, a missing ``>``, escaped quotes in the name and
    bare numbers. Either part may be None (absent) or empty.
    """
    unquoted, quotes_stripped = _strip_quotes(text)
    bracket = unquoted.rfind("<")
    if bracket >= 0:
        closing = unquoted.rfind(">", bracket)
        number = unquoted[bracket + 1 : closing] if closing >= 0 else unquoted[bracket + 1 :]
        name = _strip_quotes(unquoted[:bracket])[0]
    else:
        shrunk = _shrink_phone_number(unquoted)
        if not quotes_stripped and _is_phone_number(shrunk):
            return None, shrunk
        number = None
        name = _strip_quotes(unquoted)[0]
    return _unescape(name), number


def _strip_quotes(text: str) -> tuple[str, bool]:
    """``text`` without surrounding blanks, then without one pair of enclosing double quotes.

    The flag tells whether quotes were removed.
    """
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == '"' and stripped[-1] == '"':
        return stripped[1:-1], True
    return stripped, False


def _unescape(text: str) -> str:
    """Drop each backslash and keep the character it escapes (a trailing backslash is dropped)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


def _shrink_phone_number(text: str) -> str:
    """Asterisk's ``ast_shrink_phone_number``: drop ( ) spaces, non-trailing '.', and '-' outside [ ]."""
    out: list[str] = []
    bracket_depth = 0
    last = len(text) - 1
    for index, char in enumerate(text):
        if char == "[":
            bracket_depth += 1
        elif char == "]":
            bracket_depth -= 1
        elif (char == "-" and not bracket_depth) or (char == "." and index != last) or char in "( )":
            continue
        out.append(char)
    return "".join(out)


def _is_phone_number(text: str) -> bool:
    return bool(text) and all(char in "0123456789*#+" for char in text)


def _strip_uri(text: str) -> str:
    """The user part of a sip:/sips: URI or the number of a tel: URI; other text unchanged."""
    lowered = text[:5].lower()
    scheme = next((scheme for scheme in _URI_SCHEMES if lowered.startswith(scheme)), None)
    if scheme is None:
        return text
    rest = text[len(scheme) :]
    if scheme != "tel:":
        rest = rest.split("@", 1)[0]
        rest = rest.split(":", 1)[0]  # user:password
    rest = _URI_PARAMETERS_RE.split(rest, maxsplit=1)[0]
    return unquote(rest)


def _compact(text: str) -> _Digits | None:
    """Digits and a leading '+' of a number written with separators; None if anything else appears."""
    digits: list[str] = []
    international = False
    for char in text:
        if char in "0123456789":
            digits.append(char)
        elif char.isdecimal():  # another script's digit: phonenumbers reads those too
            digits.append(str(int(char)))
        elif char in _PLUS_SIGNS and not digits and not international:
            international = True
        elif char not in _SEPARATORS:
            return None
    if not digits:
        return None
    return _Digits("".join(digits), international)


# --- from digits to a number --------------------------------------------------------------------

_PARSE_ERROR_KINDS: Final[dict[int, NumberKind]] = {
    NumberParseException.INVALID_COUNTRY_CODE: NumberKind.INVALID,
    # Digits only reach the parser, so 'not a number' means fewer than phonenumbers' minimum of 2.
    NumberParseException.NOT_A_NUMBER: NumberKind.TOO_SHORT,
    NumberParseException.TOO_SHORT_AFTER_IDD: NumberKind.TOO_SHORT,
    NumberParseException.TOO_SHORT_NSN: NumberKind.TOO_SHORT,
    NumberParseException.TOO_LONG: NumberKind.TOO_LONG,
}


def _from_digits(raw: str, number: _Digits, region: str) -> NumberInfo:
    limit = _MAX_E164_DIGITS if number.international else _MAX_NATIONAL_DIGITS
    if len(number.digits) > limit:
        return _without_number(raw, NumberKind.TOO_LONG)
    nanp = _nanp_national(number, region)
    if nanp is not None:
        # A complete NANP number: what parse, is_possible_number and format_number would give.
        parsed = PhoneNumber(country_code=_NANP_COUNTRY_CODE, national_number=int(nanp))
        e164 = "+1" + nanp
    else:
        text = "+" + number.digits if number.international else number.digits
        try:
            parsed = phonenumbers.parse(text, region)
        except NumberParseException as error:
            return _without_number(raw, _PARSE_ERROR_KINDS.get(error.error_type, NumberKind.INVALID))
        kind = _possibility_kind(parsed, number, region)
        if kind is not NumberKind.NUMBER:
            return _without_number(raw, kind)
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) - 1 > _MAX_E164_DIGITS:
        return _without_number(raw, NumberKind.TOO_LONG)
    number_region = phonenumbers.region_code_for_number(parsed)
    number_type = _number_type(parsed, number_region)
    return NumberInfo(
        raw=_safe_raw(raw),
        kind=NumberKind.NUMBER,
        e164=e164,
        key=int(e164[1:]),
        # Same as phonenumbers.is_valid_number (which computes the type again): a number is valid
        # exactly when its region's metadata gives it a type.
        valid=number_type != PhoneNumberType.UNKNOWN,
        number_type=_NUMBER_TYPE_NAMES.get(number_type, "unknown"),
        region=number_region,
        country_code=parsed.country_code,
        exchange=_exchange(parsed, e164, number_type),
        restricted=False,
    )


def _nanp_national(number: _Digits, region: str) -> str | None:
    """The 10 national digits of ``+1 NXX NXX XXXX`` (or ``NXX NXX XXXX`` dialled in a NANP region),
    else None. Most callers of a North American PBX are such numbers: they skip phonenumbers.parse."""
    digits = number.digits
    if number.international:
        if len(digits) != 11 or digits[0] != "1":
            return None
        digits = digits[1:]
    elif len(digits) != 10 or region not in _NANP_REGIONS:
        return None
    return digits if digits[0] in "23456789" else None


def _number_type(parsed: PhoneNumber, region: str | None) -> int:
    """``phonenumbers.number_type(parsed)`` given the region already found for it.

    number_type() looks the region up again, and for +1 that lookup runs the type patterns of
    each NANP country in turn: a third of the cost of a new number. Same result (tested).
    """
    if parsed.country_code is None:
        return int(PhoneNumberType.UNKNOWN)
    # The stubs say str; the function takes None (a non-geographical calling code), as number_type() passes.
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(parsed.country_code, region)  # type: ignore[arg-type]
    if metadata is None:
        return int(PhoneNumberType.UNKNOWN)
    return int(_number_type_helper(phonenumbers.national_significant_number(parsed), metadata))


def _possibility_kind(parsed: PhoneNumber, number: _Digits, region: str) -> NumberKind:
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason in (ValidationResult.IS_POSSIBLE, ValidationResult.INVALID_LENGTH):
        # INVALID_LENGTH: a length between the plan's possible lengths; still a definite E.164.
        return NumberKind.NUMBER
    if reason == ValidationResult.TOO_LONG:
        return NumberKind.TOO_LONG
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        return NumberKind.INVALID
    # TOO_SHORT or IS_POSSIBLE_LOCAL_ONLY (a local number without its area code).
    if not number.international and shortnumberinfo.is_possible_short_number_for_region(parsed, region):
        return NumberKind.SHORT_CODE
    return NumberKind.TOO_SHORT


def _exchange(parsed: PhoneNumber, e164: str, number_type: int) -> int | None:
    country_code = parsed.country_code
    if country_code == _NANP_COUNTRY_CODE:
        return int(e164[1:8]) if len(e164) == _NANP_E164_LENGTH else None
    if country_code is None or not phonenumbers.is_number_type_geographical(number_type, country_code):
        return None  # also spares length_of_geographical_area_code's own, costly, type check
    area_code_length = phonenumbers.length_of_geographical_area_code(parsed)
    if area_code_length == 0:
        return None
    national = phonenumbers.national_significant_number(parsed)
    return int(f"{country_code}{national[: area_code_length + 2]}")
