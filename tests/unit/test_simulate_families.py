"""Each traffic family behaves as documented in docs/simulate.md (default mix, synthetic pool)."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import phonenumbers
import pytest

from callshield.simulate import LEGIT_FAMILIES, SimCall, Simulation, SimulationOptions, simulate, synthetic_pool
from callshield.simulate._mix import _build
from callshield.simulate._world import PREMIUM_NON_GEO, PREMIUM_REGIONS

CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture(scope="module")
def run() -> Simulation:
    return simulate(SimulationOptions(seed=21), synthetic_pool())


def of(run: Simulation, family: str) -> list[SimCall]:
    calls = [call for call in run.calls if call.family == family]
    assert calls, f"no {family} calls"
    return calls


def by_campaign(calls: list[SimCall]) -> Iterator[list[SimCall]]:
    groups: dict[str, list[SimCall]] = defaultdict(list)
    for call in calls:
        groups[call.campaign].append(call)
    yield from groups.values()


def national(e164: str | None) -> int:
    assert e164 is not None and e164.startswith("+1")
    return int(e164[2:])


def test_labels_follow_families(run: Simulation) -> None:
    for call in run.calls:
        assert call.abusive is (call.family not in LEGIT_FAMILIES)
        assert call.campaign.startswith(call.family)


def test_legit_numbers_are_valid_and_never_from_the_abusive_pool(run: Simulation) -> None:
    for call in run.calls[::11]:
        if call.abusive or call.caller is None:
            continue
        assert phonenumbers.is_valid_number(phonenumbers.parse(call.caller)), call
        if call.caller.startswith("+1"):
            assert national(call.caller) not in run.pool
    dids = {did.e164 for did in run.dids}
    assert not any(call.caller in dids for call in run.calls)


def test_each_legit_caller_has_its_own_number_and_name(run: Simulation) -> None:
    numbers: dict[str, set[str | None]] = defaultdict(set)
    names: dict[str | None, set[str]] = defaultdict(set)
    for call in run.calls:
        if not call.abusive:
            numbers[call.campaign].add(call.caller)
            names[call.caller].add(call.name)
    assert all(len(callers) == 1 for callers in numbers.values())
    owners: dict[str | None, int] = defaultdict(int)
    for callers in numbers.values():
        owners[next(iter(callers))] += 1
    assert max(owners.values()) == 1  # no two legitimate callers share a number
    assert all(len(shown) == 1 for caller, shown in names.items() if caller)


def test_pool_families_use_pool_numbers(run: Simulation) -> None:
    for family in ("robocall", "sweep", "snowshoe", "telemarketer", "slow"):
        assert all(national(call.caller) in run.pool for call in of(run, family)), family


def test_sweeps_ascend_through_the_dids(run: Simulation) -> None:
    runs = int(run.options.mix.param("sweep", "runs_per_campaign"))
    for campaign in by_campaign(of(run, "sweep")):
        numbers = [run.dids[call.did].national for call in campaign]  # time order
        descents = sum(1 for a, b in itertools.pairwise(numbers) if b <= a)
        assert descents <= runs - 1
        assert len(campaign) >= 50


def test_neighbour_spoofs_rotate_and_share_the_callees_exchange(run: Simulation) -> None:
    calls = of(run, "neighbour-spoof")
    same = [national(call.caller) // 10_000 == run.dids[call.did].national // 10_000 for call in calls]
    share = sum(same) / len(calls)
    assert 0.7 < share < 0.9  # same_exchange = 0.8; the rest follows the FTC area-code pairs
    assert len({call.caller for call in calls}) > 0.95 * len(calls)  # a new number nearly every call


def test_neighbour_spoofs_all_share_the_exchange_when_asked() -> None:
    mix = _build("t", {"neighbour-spoof": {"same_exchange": 1.0}}, source="test")
    run = simulate(SimulationOptions(seed=3, hours=6, dids=500, mix=mix), synthetic_pool())
    calls = of(run, "neighbour-spoof")
    assert all(national(call.caller) // 10_000 == run.dids[call.did].national // 10_000 for call in calls)


def test_wangiri_rings_once_from_premium_ranges(run: Simulation) -> None:
    codes = {phonenumbers.country_code_for_region(region) for region in PREMIUM_REGIONS} | set(PREMIUM_NON_GEO)
    for call in of(run, "wangiri"):
        assert call.caller is not None
        assert phonenumbers.parse(call.caller).country_code in codes
        assert call.disposition == "NO ANSWER" and call.billsec == 0 and 1 <= call.ring <= 3


def test_snowshoe_spreads_over_hundreds_of_numbers(run: Simulation) -> None:
    for campaign in by_campaign(of(run, "snowshoe")):
        per_number: dict[str | None, int] = defaultdict(int)
        for call in campaign:
            per_number[call.caller] += 1
        assert len(per_number) >= 200
        assert max(per_number.values()) <= 3


def test_slow_campaigns_stay_under_a_per_number_rate_limit(run: Simulation) -> None:
    per_number: dict[str | None, list[int]] = defaultdict(list)
    for call in of(run, "slow"):
        per_number[call.caller].append(call.start)
    for starts in per_number.values():
        for index, start in enumerate(starts):
            assert sum(1 for other in starts[index:] if other < start + 3600) <= 2


def test_spoofed_business_numbers_also_call_legitimately(run: Simulation) -> None:
    legit_business = {call.caller for call in of(run, "business")}
    spoofed = of(run, "spoofed-business")
    assert all(call.caller in legit_business for call in spoofed)
    names = {call.caller: call.name for call in of(run, "business")}
    assert all(call.name == names[call.caller] for call in spoofed)  # the real business's CNAM


def test_telemarketers_call_the_same_dids_again(run: Simulation) -> None:
    for campaign in by_campaign(of(run, "telemarketer")):
        assert len({call.caller for call in campaign}) <= 2
        assert len(campaign) > 1.3 * len({call.did for call in campaign})


def test_business_fan_out_is_high_and_answered(run: Simulation) -> None:
    calls = of(run, "business")
    fan_out = max(len({call.did for call in campaign}) for campaign in by_campaign(calls))
    assert fan_out >= 100
    answered = [call.billsec for call in calls if call.answered]
    assert len(answered) / len(calls) > 0.45 and statistics.median(answered) >= 30


def test_callbacks_come_from_new_numbers(run: Simulation) -> None:
    calls = of(run, "callback")
    assert len({call.caller for call in calls}) == len(calls)
    assert sum(call.answered for call in calls) / len(calls) > 0.75


def test_withheld_callers_present_no_number(run: Simulation) -> None:
    forms = {call.form for call in of(run, "withheld")}
    assert forms <= {"anonymous", "restricted", "empty", "unavailable"} and len(forms) >= 3


def test_local_exchange_callers_share_the_exchange_and_repeat(run: Simulation) -> None:
    calls = of(run, "local-exchange")
    assert all(national(call.caller) // 10_000 == run.dids[call.did].national // 10_000 for call in calls)
    assert len({call.caller for call in calls}) < 0.5 * len(calls)


def test_bursts_pack_many_callers_into_minutes(run: Simulation) -> None:
    calls = of(run, "burst")
    groups: dict[str, list[int]] = defaultdict(list)
    for call in calls:
        groups[call.campaign.rsplit("-", 1)[0]].append(call.start)
    for starts in groups.values():
        assert len(starts) >= 100 and max(starts) - min(starts) <= 20 * 60
    assert sum(call.disposition == "BUSY" for call in calls) / len(calls) > 0.15


def test_international_family_calls_are_long(run: Simulation) -> None:
    calls = of(run, "international")
    assert all(call.caller is not None and not call.caller.startswith("+1") for call in calls)
    assert statistics.median(call.billsec for call in calls if call.answered) > 300


def test_outcomes_differ_between_legit_and_robocalls(run: Simulation) -> None:
    personal = [call.billsec for call in of(run, "personal") if call.answered]
    robocall = of(run, "robocall")
    assert 60 <= statistics.median(personal) <= 400
    assert statistics.median(call.billsec for call in robocall if call.answered) < 60
    assert sum(call.answered for call in robocall) / len(robocall) < 0.5
    short = [call for call in of(run, "short") if call.answered]
    assert max(call.billsec for call in short) <= 12


def _local_hour(call: SimCall) -> int:
    return datetime.fromtimestamp(call.start, tz=CHICAGO).hour


def test_diurnal_profiles(run: Simulation) -> None:
    business = of(run, "business")
    assert sum(8 <= _local_hour(call) < 18 for call in business) / len(business) > 0.85
    robocall = of(run, "robocall")
    assert sum(8 <= _local_hour(call) < 21 for call in robocall) / len(robocall) > 0.9
    personal = of(run, "personal")
    evening = sum(17 <= _local_hour(call) < 21 for call in personal) / len(personal)
    night = sum(1 <= _local_hour(call) < 5 for call in personal) / len(personal)
    assert evening > 4 * night
