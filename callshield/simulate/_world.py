"""The simulated node and the numbers around it: DIDs, trunks, and makers of realistic caller numbers.

Numbers are handled as E.164 strings. How a trunk *delivers* a number (``+1...``, ``1...``, 10 digits,
``011...``) is decided in :meth:`Trunk.deliver`, so every family gets the same realistic formats.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import phonenumbers

from callshield.simulate._pool import NumberPool

__all__ = [
    "NODE_NPAS",
    "PREMIUM_REGIONS",
    "TRUNKS",
    "Did",
    "Numbers",
    "Trunk",
    "build_dids",
    "choice",
]

NODE_NPAS: Final = (312, 773, 872)
"""The node's own area codes (Chicago): its DIDs are in these."""
HOME_NPAS: Final = (312, 773, 872, 630, 708, 847, 224, 331, 815, 779)
"""Area codes of the node's region: most personal callers live here."""
OTHER_NPAS: Final = (
    212, 213, 214, 215, 216, 281, 303, 305, 313, 314, 317, 347, 404, 407, 412, 414, 415, 469, 480,
    502, 503, 504, 512, 602, 612, 614, 615, 617, 646, 702, 704, 713, 718, 720, 786, 813, 816, 832,
    901, 916, 919, 972, 206, 262, 319, 414, 515, 608, 651, 920,
)  # fmt: skip
TOLL_FREE_NPAS: Final = (800, 833, 844, 855, 866, 877, 888)
FAMILY_REGIONS: Final = ("MX", "IN", "PH", "CN", "GB", "DE", "NG", "PL", "VN", "SV", "GT", "CO", "BR", "IT", "HT")
"""Origins of international family calls (large US diasporas)."""
PREMIUM_REGIONS: Final = ("TN", "MR", "GN", "SL", "SO", "MD", "AL", "CU", "LV", "BA")
"""Countries whose high-termination-rate ranges wangiri operations are reported to use."""
PREMIUM_NON_GEO: Final = (881, 882, 883)
"""Satellite and international-network codes, also used for wangiri."""
_EXCHANGES_PER_NPA: Final = 25
_MIXED_FORM_SHARE: Final = 0.03
_INTL_00_SHARE: Final = 0.05
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Trunk:
    """A carrier trunk: how it writes numbers, and its channel name prefix."""

    name: str
    nanp_form: str  # 'e164', 'nanp11' or 'national10'
    intl_form: str  # 'e164' or 'intl011'

    def deliver_did(self, e164: str) -> str:
        return _nanp_as(e164, self.nanp_form)

    def deliver(self, rng: random.Random, e164: str) -> tuple[str, str]:
        """(src as delivered, form name) for a caller number ``e164``."""
        if e164.startswith("+1") and len(e164) == 12:
            form = self.nanp_form
            if rng.random() < _MIXED_FORM_SHARE:  # one carrier's upstreams do not all agree
                form = choice(rng, ("e164", "nanp11", "national10"))
            return _nanp_as(e164, form), form
        if self.intl_form == "e164":
            return e164, "e164"
        if rng.random() < _INTL_00_SHARE:
            return "00" + e164[1:], "intl00"
        return "011" + e164[1:], "intl011"


TRUNKS: Final = (
    Trunk("carrierA", "e164", "e164"),
    Trunk("carrierB", "nanp11", "intl011"),
    Trunk("carrierC", "national10", "intl011"),
)


def choice(rng: random.Random, options: Sequence[_T]) -> _T:
    """``rng.choice`` without its rejection sampling (a few times faster; bias below 2**-40)."""
    return options[int(rng.random() * len(options))]


def _nanp_as(e164: str, form: str) -> str:
    if form == "nanp11":
        return e164[1:]
    if form == "national10":
        return e164[2:]
    return e164


@dataclass(frozen=True, slots=True)
class Did:
    """One DID of the node."""

    index: int
    e164: str
    national: int  # the 10 national digits as an int
    trunk: Trunk
    delivered: str  # as the trunk writes it in 'dst'
    extension: str


def build_dids(rng: random.Random, count: int) -> list[Did]:
    """``count`` DIDs in blocks of 100 consecutive numbers (1-3 adjacent blocks per exchange),
    each block on one trunk; sorted by number."""
    nationals: list[tuple[int, Trunk]] = []
    used_exchanges: set[int] = set()
    remaining = count
    block_number = 0
    while remaining > 0:
        npa = choice(rng, NODE_NPAS)
        nxx = rng.randrange(200, 1000)
        exchange = npa * 1000 + nxx
        if nxx % 100 == 11 or nxx == 555 or exchange in used_exchanges or not _valid(1, f"{exchange}4567"):
            continue
        used_exchanges.add(exchange)
        blocks = min(choice(rng, (1, 2, 3)), (remaining + 99) // 100)
        first = rng.randrange(0, 100 - blocks + 1)
        for block in range(first, first + blocks):
            trunk = TRUNKS[block_number % len(TRUNKS)]
            block_number += 1
            size = min(100, remaining)
            base = exchange * 10_000 + block * 100
            nationals.extend((base + line, trunk) for line in range(size))
            remaining -= size
    nationals.sort(key=lambda pair: pair[0])
    dids = []
    for index, (national, trunk) in enumerate(nationals):
        e164 = f"+1{national}"
        dids.append(Did(index, e164, national, trunk, trunk.deliver_did(e164), str(10_000 + index)))
    return dids


def _valid(country_code: int, national: str) -> bool:
    """``phonenumbers.is_valid_number`` of +``country_code`` ``national`` (no text parsing)."""
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
    return bool(phonenumbers.is_valid_number(number))


@dataclass
class Numbers:
    """Makes caller numbers: legit ones valid and never in the abusive pool, never reused by accident."""

    rng: random.Random
    pool: NumberPool
    dids: frozenset[int]
    seed: str
    """Seeds the exchange tables, so they do not depend on which family asks first."""
    used: set[int] = field(default_factory=set)
    pool_taken: set[int] = field(default_factory=set)
    """Pool numbers already given to a campaign: each abusive number belongs to one campaign."""
    foreign_used: set[str] = field(default_factory=set)
    """International numbers already given to a caller."""
    _exchanges: dict[int, list[int]] = field(default_factory=dict)
    _examples: dict[str, tuple[int, str, int]] = field(default_factory=dict)

    def for_family(self, rng: random.Random) -> Numbers:
        """The same tables and used numbers, drawing with a family's own ``rng``."""
        return Numbers(
            rng,
            self.pool,
            self.dids,
            self.seed,
            self.used,
            self.pool_taken,
            self.foreign_used,
            self._exchanges,
            self._examples,
        )

    def from_pool(self, count: int, *, run: bool = False) -> list[str]:
        """``count`` distinct pool numbers no other campaign has (fewer only if the pool runs out);
        with ``run``, neighbours in the sorted pool from one random place (a rented block)."""
        numbers = self.pool.numbers
        found: list[str] = []
        attempts = 0
        offset = int(self.rng.random() * len(numbers))
        while len(found) < count and attempts < count * 20 + 100:
            attempts += 1
            if run:
                offset = (offset + 1) % len(numbers)
                national = numbers[offset]
            else:
                national = numbers[int(self.rng.random() * len(numbers))]
            if national not in self.pool_taken:
                self.pool_taken.add(national)
                found.append(f"+1{national}")
        return found

    def nanp(self, *, home: bool) -> str:
        """A new valid NANP number in the node's region (``home``) or elsewhere in the US."""
        npa = choice(self.rng, HOME_NPAS if home else OTHER_NPAS)
        return self._fresh_in(choice(self.rng, self._exchanges_of(npa)))

    def toll_free(self) -> str:
        """A new valid toll-free number (a business's customer-service line)."""
        return self._fresh_in(choice(self.rng, self._exchanges_of(choice(self.rng, TOLL_FREE_NPAS))))

    def in_exchange(self, exchange: int) -> str:
        """A new number in NPA-NXX ``exchange`` that is not one of the node's DIDs."""
        return self._fresh_in(exchange)

    def spoof_in_exchange(self, exchange: int) -> str:
        """A random number of ``exchange`` (not a DID), reuse allowed: what a neighbour spoofer dials from."""
        while True:
            national = exchange * 10_000 + self.rng.randrange(10_000)
            if national not in self.dids:
                return f"+1{national}"

    def spoof_in_npa(self, npa: int) -> str:
        """A random number with area code ``npa`` and a random exchange."""
        nxx = self.rng.randrange(200, 1000)  # spoofers do not check that the exchange exists
        return self.spoof_in_exchange(npa * 1000 + (nxx if nxx % 100 != 11 else nxx + 1))

    def international(self, region: str) -> str:
        """A new valid mobile number of ``region`` (E.164)."""
        return self._fresh_variant(region, phonenumbers.PhoneNumberType.MOBILE)

    def premium(self, region_or_code: str | int) -> str:
        """A new number in a premium or high-termination range of a wangiri country (its premium-rate
        range where phonenumbers knows one, else its mobile range) or of a non-geographic code."""
        if isinstance(region_or_code, int):
            return self._fresh_variant(region_or_code, None)
        return self._fresh_variant(region_or_code, phonenumbers.PhoneNumberType.PREMIUM_RATE)

    def _fresh_variant(self, source: str | int, kind: int | None) -> str:
        """A number sharing the leading digits of phonenumbers' example number for ``source`` and
        ``kind`` (the last 5 digits random), valid if one is found in 200 tries, never given before."""
        key = f"{source}:{kind}"
        example = self._examples.get(key)
        if example is None:
            if isinstance(source, int) or kind is None:
                found = phonenumbers.example_number_for_non_geo_entity(int(source))
            else:
                found = phonenumbers.example_number_for_type(source, kind)
                if found is None:
                    found = phonenumbers.example_number_for_type(source, phonenumbers.PhoneNumberType.MOBILE)
            if found is None or found.country_code is None:
                raise ValueError(f"phonenumbers has no example number for {key}")
            national = phonenumbers.national_significant_number(found)
            kept = national[: max(2, len(national) - 5)]
            example = self._examples[key] = (found.country_code, kept, len(national))
        country_code, kept, length = example
        fallback = None
        for _ in range(200):
            candidate = kept + "".join(str(int(self.rng.random() * 10)) for _ in range(length - len(kept)))
            e164 = f"+{country_code}{candidate}"
            if e164 in self.foreign_used:
                continue
            fallback = fallback or e164
            if _valid(country_code, candidate):
                self.foreign_used.add(e164)
                return e164
        if fallback is None:
            raise ValueError(f"no unused number left near +{country_code}{kept}")
        self.foreign_used.add(fallback)
        return fallback

    def _exchanges_of(self, npa: int) -> list[int]:
        exchanges = self._exchanges.get(npa)
        if exchanges is None:
            rng = random.Random(f"{self.seed}:exchanges:{npa}")
            exchanges = []
            for _ in range(_EXCHANGES_PER_NPA * 4):
                nxx = rng.randrange(200, 1000)
                if nxx % 100 == 11 or nxx == 555:
                    continue
                if _valid(1, f"{npa}{nxx}{rng.randrange(10_000):04d}"):
                    exchanges.append(npa * 1000 + nxx)
                    if len(exchanges) >= _EXCHANGES_PER_NPA:
                        break
            if not exchanges:
                raise ValueError(f"no valid exchange found for area code {npa}")
            self._exchanges[npa] = exchanges
        return exchanges

    def _fresh_in(self, exchange: int) -> str:
        for _ in range(1000):
            national = exchange * 10_000 + self.rng.randrange(10_000)
            if national in self.used or national in self.dids or national in self.pool:
                continue
            self.used.add(national)
            return f"+1{national}"
        raise ValueError(f"exchange {exchange} is exhausted")
