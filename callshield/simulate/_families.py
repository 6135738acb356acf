"""The traffic families: each one a function that emits the calls of its callers or campaigns.

Every family draws from its own ``random.Random`` (seeded from the simulation seed and the family's
name), so changing one family's parameters leaves the other families' calls unchanged, except where
numbers must stay distinct across families (a collision makes a later family draw again). Parameters
are documented in ``docs/simulate.md``; defaults are in ``_mix.py``.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from callshield.simulate._call import BUSY, NO_ANSWER, Outcome, SimCall
from callshield.simulate._mix import Value
from callshield.simulate._pool import NumberPool
from callshield.simulate._time import Timeline
from callshield.simulate._world import FAMILY_REGIONS, PREMIUM_NON_GEO, PREMIUM_REGIONS, Did, Numbers, choice

__all__ = ["FAMILY_FUNCTIONS", "Actor", "Business", "Context"]

WIRELESS: Final = "WIRELESS CALLER"
_SURNAMES: Final = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ", "MARTINEZ",
    "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN",
    "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "NGUYEN", "KOWALSKI", "PATEL", "KIM", "OKAFOR",
)  # fmt: skip
_GIVEN: Final = ("JOHN", "MARIA", "JAMES", "ANNA", "DAVID", "LINDA", "ROBERT", "SUSAN", "JOSE", "MEI", "AHMED", "KAREN")
_CITIES: Final = ("CHICAGO IL", "EVANSTON IL", "OAK PARK IL", "CICERO IL", "SKOKIE IL", "NAPERVILLE IL")
_OTHER_CITIES: Final = ("NEW YORK NY", "HOUSTON TX", "PHOENIX AZ", "DALLAS TX", "MIAMI FL", "DENVER CO")
_BUSINESS_NAMES: Final = (
    "CVS PHARMACY", "WALGREENS", "JEWEL OSCO PHAR", "CHICAGO PUB SCH", "LINCOLN ELEM", "UPS", "FEDEX",
    "AMAZON LOGISTC", "COMED", "PEOPLES GAS", "NORTHWESTERN MD", "RUSH UNIV MED", "CHASE BANK", "XFINITY",
    "CITY OF CHICAGO", "DENTAL CARE", "UCHICAGO MED", "LOYOLA MED", "USPS", "WALMART PHARMCY",
    "SCHOOL DIST 65", "LURIE CHILDRNS", "TARGET", "AT&T", "BMO HARRIS", "STATE FARM", "ATHLETICO",
    "QUEST DIAGNOSTC", "LABCORP", "HOME DEPOT",
)  # fmt: skip
_SCAM_NAMES: Final = ("", "", "", WIRELESS, "SPAM RISK", "TELEMARKETER", "HEALTH BENEFITS", "AUTO WARRANTY")
_WITHHELD_FORMS: Final = (
    # (src, caller name, form): how trunks present a caller who withholds the number
    ("anonymous", "Anonymous", "anonymous"),
    ("Restricted", "RESTRICTED", "restricted"),
    ("", "", "empty"),
    ("unknown", "Unavailable", "unavailable"),
    ("anonymous", "", "anonymous"),
)
_WITHHELD_WEIGHTS: Final = (0.40, 0.25, 0.10, 0.10, 0.15)
_JUNK: Final = ("0", "+", "N/A", "123", "*67", "00000", "#", "1-", "sip:", "++1")
_JUNK_SHARE: Final = 0.002
"""Share of number-bearing calls a trunk delivers as junk (a broken upstream, a PBX misconfiguration)."""


@dataclass(frozen=True, slots=True)
class Business:
    """A legitimate business caller; spoofers may borrow its number."""

    campaign: str
    number: str
    name: str


@dataclass(frozen=True, slots=True)
class Actor:
    """A caller as the batch path sees it: its campaign id, true number, CNAM name, the DIDs it calls
    (None: any DID) and, for a withheld caller, the (src, name, form) it presents."""

    campaign: str
    number: str
    name: str
    callees: Sequence[Did] | None = None
    presentation: tuple[str, str, str] | None = None


@dataclass
class Context:
    """What a family needs: its parameters, its random stream, the node, and where calls go."""

    family: str
    abusive: bool
    params: Mapping[str, Value]
    rng: random.Random
    generator: np.random.Generator
    """The family's numpy stream, for calls drawn in batches (:meth:`emit_many`)."""
    timeline: Timeline
    dids: Sequence[Did]
    numbers: Numbers
    pool: NumberPool
    volume: float
    """scale * dids / 2000: multiplies rates and populations."""
    businesses: list[Business]
    calls: list[SimCall] = field(default_factory=list)
    outcome: Outcome = field(init=False)
    profile: str = field(init=False)
    """The family's diurnal profile (see _time.py)."""
    _draw_start: Callable[[random.Random], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.outcome = Outcome.from_params(self.params)
        self.profile = str(self.params["profile"])
        self._draw_start = self.timeline.sampler(self.profile)

    def num(self, key: str) -> float:
        return float(self.params[key])

    def count(self, key: str) -> int:
        """A population parameter scaled by volume (at least 1 when the parameter is positive)."""
        base = float(self.params[key])
        return max(1, round(base * self.volume)) if base > 0 and self.volume > 0 else 0

    def campaigns(self) -> tuple[int, float]:
        """(number of campaigns, intensity): ``campaigns * volume`` rounded, at least 1; the intensity
        multiplies each campaign's own rate so that the family's total still scales with volume."""
        wanted = float(self.params["campaigns"]) * self.volume
        if wanted <= 0:
            return 0, 0.0
        count = max(1, round(wanted))
        return count, wanted / count

    def window_calls(self, intensity: float, window: tuple[int, int]) -> int:
        """A Poisson number of calls of one campaign active in ``window`` (whole hours)."""
        start = self.timeline.start
        hours = ((window[0] - start) // 3600, (window[1] - start) // 3600)
        expected = float(self.params["calls_per_hour"]) * intensity * self.timeline.expected_hours(self.profile, hours)
        return poisson(self.rng, expected)

    def n_calls(self, per_hour: float, profile: str | None = None) -> int:
        """A Poisson number of calls at ``per_hour`` (already scaled) over the window."""
        return poisson(self.rng, per_hour * self.timeline.expected_hours(profile or self.profile))

    def when(self, window: tuple[int, int] | None = None) -> int:
        """A start time drawn from the family's profile, inside ``window`` (whole hours) when given."""
        if window is None:
            return self._draw_start(self.rng)
        start = self.timeline.start
        return self.timeline.draw(self.rng, self.profile, ((window[0] - start) // 3600, (window[1] - start) // 3600))

    def active_window(self) -> tuple[int, int]:
        """A campaign's active period in whole hours: starts in the first half of the window and
        lasts a third of it to all of it (at least one hour)."""
        hours = self.timeline.hours
        begin = self.rng.randrange(max(1, hours // 2))
        length = self.rng.randint(max(1, hours // 3), hours)
        end = min(hours, begin + length)
        return self.timeline.start + begin * 3600, self.timeline.start + end * 3600

    def emit(
        self,
        start: int,
        did: Did,
        caller: str | None,
        name: str,
        campaign: str,
        presentation: tuple[str, str, str] | None = None,
    ) -> SimCall | None:
        """Record one call (None when ``start`` falls outside the window). ``presentation`` is
        (src, name, form) for a caller without a number."""
        timeline, rng = self.timeline, self.rng
        if not timeline.start <= start < timeline.end:
            return None
        disposition, ring, billsec = self.outcome.draw(rng)
        if presentation is not None:
            src, name, form = presentation
        elif caller is None:
            raise ValueError("a call needs a caller number or a presentation")
        elif rng.random() < _JUNK_SHARE:
            src, form = choice(rng, _JUNK), "junk"
        else:
            src, form = did.trunk.deliver(rng, caller)
        call = SimCall(
            start, ring, billsec, disposition, did.index, src, name, form, caller, self.family, campaign, self.abusive
        )
        self.calls.append(call)
        return call

    def emit_many(
        self,
        n: int,
        actors: Sequence[Actor],
        cumulative: Sequence[float] | None = None,
        window: tuple[int, int] | None = None,
    ) -> None:
        """Record ``n`` calls at once: start times from the profile (inside ``window``, whole hours),
        actors by ``cumulative`` weights (None: uniform), a callee per actor, outcomes, trunk formats.
        The same distributions as :meth:`emit`, drawn with numpy (the hot path of large families)."""
        if n <= 0 or not actors:
            return
        generator = self.generator
        hours = None
        if window is not None:
            start = self.timeline.start
            hours = ((window[0] - start) // 3600, (window[1] - start) // 3600)
        starts = self.timeline.draw_many(generator, self.profile, n, hours)
        if cumulative is None:
            picks = np.minimum((generator.random(n) * len(actors)).astype(np.int64), len(actors) - 1)
        else:
            table = np.asarray(cumulative)
            picks = np.minimum(np.searchsorted(table, generator.random(n) * table[-1], side="right"), len(actors) - 1)
        callee_draws = generator.random(n).tolist()
        junk = (generator.random(n) < _JUNK_SHARE).tolist()
        dispositions, rings, billsecs = self.outcome.draw_many(generator, n)
        rng, dids, family, abusive, append = self.rng, self.dids, self.family, self.abusive, self.calls.append
        n_dids = len(dids)
        for start, pick, callee_draw, is_junk, disposition, ring, billsec in zip(
            starts, picks.tolist(), callee_draws, junk, dispositions, rings, billsecs, strict=True
        ):
            actor = actors[pick]
            callees = actor.callees
            did = dids[int(callee_draw * n_dids)] if callees is None else callees[int(callee_draw * len(callees))]
            name = actor.name
            if actor.presentation is not None:
                src, name, form = actor.presentation
            elif is_junk:
                src, form = choice(rng, _JUNK), "junk"
            else:
                src, form = did.trunk.deliver(rng, actor.number)
            campaign = actor.campaign
            append(
                SimCall(
                    start,
                    ring,
                    billsec,
                    disposition,
                    did.index,
                    src,
                    name,
                    form,
                    actor.number,
                    family,
                    campaign,
                    abusive,
                )
            )

    def random_did(self) -> Did:
        return self.dids[int(self.rng.random() * len(self.dids))]


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation above 50)."""
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, product, count = math.exp(-lam), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def _weighted(rng: random.Random, n: int, sigma: float = 0.8, cap: float | None = 4.0) -> list[float]:
    """Cumulative activity weights of ``n`` actors: log-normal (some are busier than most), cut at
    ``cap`` times the median so that no legitimate person calls like a dialer."""
    running, cumulative = 0.0, []
    for _ in range(n):
        weight = rng.lognormvariate(0.0, sigma)
        running += weight if cap is None else min(weight, cap)
        cumulative.append(running)
    return cumulative


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _person_name(rng: random.Random, wireless: float, *, home: bool = True) -> str:
    u = rng.random()
    if u < wireless:
        return WIRELESS
    if u < wireless + (1 - wireless) * 0.5:
        return f"{choice(rng, _SURNAMES)} {choice(rng, _GIVEN)}"[:15]
    if u < wireless + (1 - wireless) * 0.8:
        return choice(rng, _CITIES if home else _OTHER_CITIES)
    return ""


# --- legitimate families -----------------------------------------------------------------------------


def personal(ctx: Context) -> None:
    """Friends and family: a stable population, each calling 1-3 DIDs, evenings and weekends favoured."""
    rng = ctx.rng
    callers = []
    for index in range(ctx.count("callers")):
        home = rng.random() < ctx.num("home_share")
        number = ctx.numbers.nanp(home=home)
        callees = [ctx.random_did() for _ in range(rng.randint(1, max(1, int(ctx.num("callees_max")))))]
        name = _person_name(rng, ctx.num("wireless_cnam"), home=home)
        callers.append(Actor(f"personal-{index}", number, name, callees))
    if callers:
        weights = _weighted(rng, len(callers))
        ctx.emit_many(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume), callers, weights)


def repeat(ctx: Context) -> None:
    """Repeat callers: one person calling one DID many times a day, redialling soon after a miss."""
    rng = ctx.rng
    callers = []
    for index in range(ctx.count("callers")):
        home = rng.random() < 0.9
        callers.append((f"repeat-{index}", ctx.numbers.nanp(home=home), _person_name(rng, 0.4), ctx.random_did()))
    if not callers:
        return
    weights = _weighted(rng, len(callers), 0.6, 2.5)
    redial, delay_mu = ctx.num("redial_after_miss"), math.log(max(1.0, ctx.num("redial_delay_median")))
    for _ in range(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume)):
        campaign, number, name, did = callers[_pick(rng, weights)]
        call = ctx.emit(ctx.when(), did, number, name, campaign)
        redials = 0
        while call is not None and call.disposition in (NO_ANSWER, BUSY) and redials < 3 and rng.random() < redial:
            start = call.start + call.ring + int(rng.lognormvariate(delay_mu, 0.8)) + 5
            call = ctx.emit(start, did, number, name, campaign)
            redials += 1


def business(ctx: Context) -> None:
    """Businesses that call many customers for good reasons (pharmacy ready, school notice, delivery):
    high fan-out, business hours, answered at a normal rate with normal durations."""
    rng = ctx.rng
    actors = []
    for index in range(ctx.count("businesses")):
        number = ctx.numbers.toll_free() if rng.random() < 0.35 else ctx.numbers.nanp(home=rng.random() < 0.8)
        name = _BUSINESS_NAMES[index % len(_BUSINESS_NAMES)]
        customers = rng.sample(list(ctx.dids), min(len(ctx.dids), rng.randint(50, 600)))
        campaign = f"business-{index}"
        actors.append(Actor(campaign, number, name, customers))
        ctx.businesses.append(Business(campaign, number, name))
    if actors:
        weights = _weighted(rng, len(actors), 0.8, None)
        ctx.emit_many(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume), actors, weights)


def callback(ctx: Context) -> None:
    """Call-backs: the callee called this number first (an outbound call the inbound CDR cannot show);
    the call back comes minutes to hours later from a number never seen before, often toll-free."""
    rng = ctx.rng
    delay_mu, delay_sigma = math.log(max(1.0, ctx.num("delay_median"))), ctx.num("delay_sigma")
    for index in range(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume)):
        toll_free = rng.random() < ctx.num("toll_free_share")
        number = ctx.numbers.toll_free() if toll_free else ctx.numbers.nanp(home=rng.random() < 0.6)
        name = choice(rng, _BUSINESS_NAMES) if toll_free else _person_name(rng, 0.4)
        outbound = ctx.when()  # the callee's outbound call (not in the CDR)
        start = outbound + int(rng.lognormvariate(delay_mu, delay_sigma))
        ctx.emit(start, ctx.random_did(), number, name, f"callback-{index}")


def short(ctx: Context) -> None:
    """Short but legitimate: wrong numbers, 'call me back', quick confirmations; some hang up while ringing."""
    rng = ctx.rng
    callers = [
        Actor(f"short-{index}", ctx.numbers.nanp(home=rng.random() < 0.8), _person_name(rng, 0.45))
        for index in range(ctx.count("callers"))
    ]
    ctx.emit_many(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume), callers)


def burst(ctx: Context) -> None:
    """Busy-hour bursts: an event (school closing, outage, a radio contest) makes hundreds of distinct
    callers ring the same few DIDs within minutes; many get busy."""
    rng = ctx.rng
    rate = ctx.num("bursts_per_day") * ctx.timeline.hours / 24
    n_bursts = max(1, poisson(rng, rate)) if rate > 0 else 0  # at least one: the family is always present
    minutes = max(1.0, ctx.num("burst_minutes"))
    for burst_index in range(n_bursts):
        start = ctx.when()
        targets = rng.sample(list(ctx.dids), min(len(ctx.dids), max(1, int(ctx.num("target_dids")))))
        for caller_index in range(ctx.count("callers_per_burst")):
            when = start + int(rng.triangular(0, minutes * 60, minutes * 12))
            number = ctx.numbers.nanp(home=rng.random() < 0.95)
            ctx.emit(when, choice(rng, targets), number, _person_name(rng, 0.5), f"burst-{burst_index}-{caller_index}")


def international(ctx: Context) -> None:
    """International family calls: valid foreign mobiles, 1-2 DIDs each, long calls, evenings/weekends."""
    rng = ctx.rng
    callers = []
    for index in range(ctx.count("callers")):
        region = choice(rng, FAMILY_REGIONS)
        callees = [ctx.random_did() for _ in range(rng.randint(1, 2))]
        name = choice(rng, ("", "", "INTERNATIONAL", "UNKNOWN NAME"))
        callers.append(Actor(f"international-{index}", ctx.numbers.international(region), name, callees))
    if callers:
        ctx.emit_many(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume), callers, _weighted(rng, len(callers)))


def withheld(ctx: Context) -> None:
    """Withheld but legitimate: doctors' offices, police, people who block their caller ID by default.
    Each caller keeps one presentation (its carrier's way of writing 'anonymous')."""
    rng = ctx.rng
    callers = []
    for index in range(ctx.count("callers")):
        form = rng.choices(_WITHHELD_FORMS, weights=_WITHHELD_WEIGHTS)[0]
        callees = [ctx.random_did() for _ in range(rng.randint(1, 2))]
        number = ctx.numbers.nanp(home=rng.random() < 0.85)
        callers.append(Actor(f"withheld-{index}", number, form[1], callees, form))
    if callers:
        ctx.emit_many(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume), callers, _weighted(rng, len(callers)))


def local_exchange(ctx: Context) -> None:
    """Legitimate neighbours: numbers that share the callee's NPA-NXX by chance, calling DIDs there."""
    rng = ctx.rng
    by_exchange: dict[int, list[Did]] = {}
    for did in ctx.dids:
        by_exchange.setdefault(did.national // 10_000, []).append(did)
    exchanges = sorted(by_exchange)
    callers = []
    for index in range(ctx.count("callers")):
        exchange = choice(rng, exchanges)
        callees = [choice(rng, by_exchange[exchange]) for _ in range(rng.randint(1, 2))]
        number = ctx.numbers.in_exchange(exchange)
        callers.append(Actor(f"local-exchange-{index}", number, _person_name(rng, 0.3), callees))
    if callers:
        ctx.emit_many(ctx.n_calls(ctx.num("calls_per_hour") * ctx.volume), callers, _weighted(rng, len(callers)))


# --- abusive families --------------------------------------------------------------------------------


def robocall(ctx: Context) -> None:
    """Random-dial robocalls: each campaign rotates over a set of FTC-reported numbers, dials DIDs at random."""
    rng = ctx.rng
    campaigns, intensity = ctx.campaigns()
    for index in range(campaigns):
        numbers = ctx.numbers.from_pool(max(1, int(ctx.num("numbers_per_campaign"))))
        window = ctx.active_window()
        name = choice(rng, _SCAM_NAMES)
        actors = [Actor(f"robocall-{index}", number, name) for number in numbers]
        ctx.emit_many(ctx.window_calls(intensity, window), actors, window=window)


def sweep(ctx: Context) -> None:
    """Sequential sweeps: a dialer walks a range of numbers upwards at a steady pace; the node sees the
    numbers it owns, in ascending order, with gaps where the range holds other subscribers."""
    rng = ctx.rng
    pace = max(0.5, ctx.num("pace_seconds"))
    span_numbers = max(1, int(ctx.num("range_blocks"))) * 100
    rotate_every = max(1, int(ctx.num("rotate_every")))
    nationals = [did.national for did in ctx.dids]
    campaigns, _ = ctx.campaigns()
    for index in range(campaigns):
        numbers = ctx.numbers.from_pool(max(1, int(ctx.num("numbers_per_campaign"))))
        start = ctx.when()
        dialled = 0
        for _ in range(max(1, int(ctx.num("runs_per_campaign")))):
            first = (choice(rng, nationals) // 100 - rng.randrange(3)) * 100
            low = bisect.bisect_left(nationals, first)
            high = bisect.bisect_left(nationals, first + span_numbers)
            for did in ctx.dids[low:high]:
                when = start + int((did.national - first) * pace + rng.uniform(0, pace * 0.9))
                number = numbers[(dialled // rotate_every) % len(numbers)]
                ctx.emit(when, did, number, "", f"sweep-{index}")
                dialled += 1
            start += int(span_numbers * pace) + rng.randrange(60, 1800)


def neighbour_spoof(ctx: Context) -> None:
    """Neighbour-spoofed scams: a new caller number for every call, in the callee's own NPA-NXX (or
    area code, with the caller/victim area-code pairs of the FTC complaints)."""
    rng = ctx.rng
    same_exchange = ctx.num("same_exchange")
    campaigns, intensity = ctx.campaigns()
    for index in range(campaigns):
        window = ctx.active_window()
        for _ in range(ctx.window_calls(intensity, window)):
            did = ctx.random_did()
            if rng.random() < same_exchange:
                number = ctx.numbers.spoof_in_exchange(did.national // 10_000)
            else:
                number = ctx.numbers.spoof_in_npa(ctx.pool.caller_npa(rng, did.national // 10**7))
            name = choice(rng, ("", "", WIRELESS, choice(rng, _CITIES)))
            ctx.emit(ctx.when(window), did, number, name, f"neighbour-spoof-{index}")


def snowshoe(ctx: Context) -> None:
    """Snowshoe: a campaign spreads its calls over hundreds of numbers (runs of neighbouring reported
    numbers, as rented in blocks), each used only a few times before it is replaced."""
    rng = ctx.rng
    max_calls = max(1, int(ctx.num("max_calls_per_number")))
    size = max(1, int(ctx.num("numbers_per_campaign")))
    campaigns, intensity = ctx.campaigns()
    for index in range(campaigns):
        supply = _pool_runs(ctx, size * 4)
        active = [supply.popleft() for _ in range(min(size, len(supply)))]
        if not active:
            continue
        uses = dict.fromkeys(active, 0)
        window = (ctx.timeline.start, ctx.timeline.end)  # snowshoe runs all the time, spread thin
        name = choice(rng, _SCAM_NAMES)
        for _ in range(ctx.window_calls(intensity, window)):
            slot = rng.randrange(len(active))
            number = active[slot]
            ctx.emit(ctx.when(window), ctx.random_did(), number, name, f"snowshoe-{index}")
            uses[number] += 1
            if uses[number] >= max_calls:
                if not supply:
                    supply.extend(_pool_runs(ctx, size))
                if supply:
                    active[slot] = supply.popleft()
                    uses.setdefault(active[slot], 0)
                else:  # the pool is exhausted: numbers get reused
                    uses[number] = 0


def _pool_runs(ctx: Context, count: int) -> deque[str]:
    """``count`` pool numbers taken as runs of up to 25 neighbours in the sorted pool."""
    found: deque[str] = deque()
    while len(found) < count:
        batch = ctx.numbers.from_pool(min(25, count - len(found)), run=True)
        if not batch:
            break  # the pool is exhausted
        found.extend(batch)
    return found


def wangiri(ctx: Context) -> None:
    """Wangiri ('one ring and cut'): bursts from premium-rate international ranges, ringing 1-2 s and
    hanging up before anyone can answer, so the callee calls back at premium rates."""
    rng = ctx.rng
    sources: list[str | int] = [*PREMIUM_REGIONS, *PREMIUM_NON_GEO]
    campaigns, intensity = ctx.campaigns()
    for index in range(campaigns):
        source = choice(rng, sources)
        numbers = [ctx.numbers.premium(source) for _ in range(max(1, int(ctx.num("numbers_per_campaign"))))]
        length = min(max(60, int(ctx.num("burst_hours") * 3600)), ctx.timeline.end - ctx.timeline.start)
        start = ctx.when((ctx.timeline.start, ctx.timeline.end - length // 3600 * 3600))
        for _ in range(round(ctx.num("calls_per_burst") * intensity)):
            ctx.emit(start + rng.randrange(length), ctx.random_did(), choice(rng, numbers), "", f"wangiri-{index}")


def telemarketer(ctx: Context) -> None:
    """Persistent telemarketers: one or two numbers calling the same list of DIDs again and again."""
    rng = ctx.rng
    campaigns, intensity = ctx.campaigns()
    for index in range(campaigns):
        numbers = ctx.numbers.from_pool(max(1, int(ctx.num("numbers_per_campaign"))))
        wanted = max(1, round(ctx.num("targets_per_campaign") * intensity))
        targets = rng.sample(list(ctx.dids), min(len(ctx.dids), wanted))
        name = choice(rng, _SCAM_NAMES)
        attempts = ctx.num("attempts_per_target") * ctx.timeline.hours / 24
        for did in targets:
            for _ in range(poisson(rng, attempts)):
                ctx.emit(ctx.when(), did, choice(rng, numbers), name, f"telemarketer-{index}")


def spoofed_business(ctx: Context) -> None:
    """Spoofed numbers of real businesses: scams presenting the number (and so the CNAM name) of a
    business that also calls legitimately in the same traffic."""
    rng = ctx.rng
    if not ctx.businesses:  # the business family is disabled: borrow a plausible business number
        ctx.businesses.append(Business("business-external", ctx.numbers.toll_free(), "CUSTOMER SVC"))
    campaigns, intensity = ctx.campaigns()
    for index in range(campaigns):
        victim = choice(rng, ctx.businesses)
        window = ctx.active_window()
        for _ in range(ctx.window_calls(intensity, window)):
            ctx.emit(ctx.when(window), ctx.random_did(), victim.number, victim.name, f"spoofed-business-{index}")


def slow(ctx: Context) -> None:
    """Slow campaigns: many numbers, each used at most once per ``min_gap_per_number`` seconds, so no
    single number trips a simple per-number rate limit."""
    rng = ctx.rng
    gap = ctx.num("min_gap_per_number")
    campaigns, intensity = ctx.campaigns()
    for index in range(campaigns):
        numbers = deque((number, -math.inf) for number in ctx.numbers.from_pool(int(ctx.num("numbers_per_campaign"))))
        if not numbers:
            continue
        name = choice(rng, _SCAM_NAMES)
        times = sorted(ctx.when() for _ in range(ctx.n_calls(ctx.num("calls_per_hour") * intensity)))
        for start in times:
            number, last = numbers[0]
            if start - last < gap:
                continue  # every number is resting: the campaign skips this slot
            numbers.popleft()
            numbers.append((number, start))
            ctx.emit(start, ctx.random_did(), number, name, f"slow-{index}")


FAMILY_FUNCTIONS: Final[dict[str, Callable[[Context], None]]] = {
    "personal": personal,
    "repeat": repeat,
    "business": business,
    "callback": callback,
    "short": short,
    "burst": burst,
    "international": international,
    "withheld": withheld,
    "local-exchange": local_exchange,
    "robocall": robocall,
    "sweep": sweep,
    "neighbour-spoof": neighbour_spoof,
    "snowshoe": snowshoe,
    "wangiri": wangiri,
    "telemarketer": telemarketer,
    "spoofed-business": spoofed_business,
    "slow": slow,
}
