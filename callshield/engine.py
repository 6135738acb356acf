"""The decision core: :class:`Firewall` turns a :class:`Call` into a :class:`Verdict`.

Decision precedence (DESIGN.md; the tests hold it to this order):
    1. safety rails: calls from or to emergency and configured critical numbers are connected;
    2. local explicit rules, most specific first (see :mod:`callshield.rules`);
    3. a recent screening pass of this caller to this callee;
    4. the risk score (reputation, dialing patterns, number facts) mapped by ``screen_at``/``block_at``;
    5. shadow mode: everything above is decided and recorded, and every call is connected.

The core does no I/O of its own on the decision path: reputation reads come from memory (with a
synchronous SQLite read on a cache miss), and every write is buffered and committed in batches by
`Firewall.flush` (synchronous, for the CLI and replays) or :meth:`Firewall.flush_async` (the
server's writer task). Time comes only from the injected clock or the call itself.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import msgspec
import phonenumbers
from msgspec.structs import replace as _replace

from callshield import db
from callshield.audit import AuditLog, decision_id
from callshield.clock import Clock, SystemClock
from callshield.config import Config, NumberingConfig, ScreeningConfig
from callshield.features import feature_vector
from callshield.liststore import ListStore
from callshield.mesh import subject_for
from callshield.model import scorer_for
from callshield.numbers import Normalizer, NumberInfo, NumberKind
from callshield.patterns import NO_CALLEE, NO_PATTERN, PatternTracker
from callshield.peers import NO_PEERS, PeerKind, PeerLedger, PeerView
from callshield.policy import Scorer, action_for
from callshield.ranges import NO_RANGE, RangeTracker
from callshield.reputation import UNKNOWN_VIEW, EvidenceKind, ReputationStore
from callshield.rules import Pattern, Rule, RuleAction, RuleSet, parse_pattern
from callshield.verdict import Action, Call, CallOutcome, Mode, Reason, ScreenResult, Verdict

log = logging.getLogger(__name__)

_PEER_REASON = "reputation:peer"
RECENT_DECISIONS = 200_000
CHALLENGED_CALLERS = 100_000
"""Callers whose recent screening challenges are counted in memory (others are counted from the audit log)."""
SCREENED_IDS = 100_000
"""Decisions whose screening result is remembered in memory, so a result is taken once."""
"""Decisions remembered in memory for the hangup feedback (older ones are looked up in the audit log)."""
FED_BACK_IDS = 200_000
"""Decisions whose hangup feedback is remembered in memory, so an outcome is taken once."""
_SCREEN_WEIGHT = {ScreenResult.FAILED: 1.0, ScreenResult.TIMEOUT: 0.5}
# Enum member lookups cost ~2 µs each on Python 3.11: the decision path reads these instead.
_CONNECT, _BLOCK, _SCREEN = Action.CONNECT, Action.BLOCK, Action.SCREEN
_ENFORCE, _ALLOW = Mode.ENFORCE, RuleAction.ALLOW
_NUMBER, _SHORT_CODE = NumberKind.NUMBER, NumberKind.SHORT_CODE


class _Recent(msgspec.Struct, frozen=True, gc=False):
    caller_key: int | None
    callee: str
    decided_at: float
    action: Action


class Firewall:
    """Decides calls; learns from their outcomes. One per process, used from one thread."""

    def __init__(
        self,
        *,
        config: Config,
        conn: sqlite3.Connection,
        clock: Clock | None = None,
        normalizer: Normalizer | None = None,
        scorer: Scorer | None = None,
        external_writer: bool = False,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._conn = conn
        self._external_writer = external_writer
        now = self._clock.now()
        self._normalizer = normalizer or Normalizer(
            default_region=config.node.default_region, cache_size=config.storage.number_cache
        )
        self.store = ReputationStore(
            conn,
            half_life=config.reputation.half_life,
            now=now,
            cache_blocks=config.storage.reputation_cache,
            bad_threshold=config.reputation.bad_threshold,
        )
        self.audit = AuditLog(conn)
        self.lists = ListStore(conn)
        self.patterns = PatternTracker(
            window=config.patterns.window,
            max_callers=config.patterns.max_callers,
            max_events=config.patterns.max_events,
            open_call=config.patterns.open_call,
        )
        self.patterns.restore(conn, now)
        self.ranges = RangeTracker(window=config.patterns.window)
        self.peers = PeerLedger(half_life=config.reputation.half_life)  # trust: apply_config
        self.on_shared: Callable[[Verdict], None] | None = None
        """Called with every recorded block or screen verdict (the mesh link shares them)."""
        self.on_screen_failed: Callable[[str], None] | None = None
        """Called with the E.164 of a caller who failed (or let time out) a screening challenge."""
        self.peers.load(conn, now)
        self._custom_scorer = scorer
        self._recent: OrderedDict[str, _Recent] = OrderedDict()
        self._passes: dict[tuple[int, str], float] = {}
        self._challenges: OrderedDict[int, tuple[float, ...]] = OrderedDict()
        self._screened_ids: OrderedDict[str, None] = OrderedDict()
        self._fed_back_ids: OrderedDict[str, None] = OrderedDict()
        self._pass_writes: list[tuple[int, str, float]] = []
        self._retry: list[db.Statement] = []
        self._last_snapshot = now
        self.counters: Counter[str] = Counter()
        """Decisions by action (keyed by the Action itself) and event counts by name."""
        self._generation = db.generation(conn)
        self.apply_config(config)
        self._load_passes(now)

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        clock: Clock | None = None,
        path: Path | str | None = None,
        external_writer: bool = False,
        scorer: Scorer | None = None,
    ) -> Firewall:
        """Open the node database named by the config (or ``path``) and build a firewall on it."""
        conn = db.connect(path if path is not None else config.storage.database_path())
        return cls(config=config, conn=conn, clock=clock, external_writer=external_writer, scorer=scorer)

    # --- configuration --------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def connection(self) -> sqlite3.Connection:
        """The node database (for bulk work such as imports)."""
        return self._conn

    @property
    def screening(self) -> ScreeningConfig | None:
        """The challenge settings when the AGI/ARI session runs the challenge; None leaves it to the dialplan."""
        screening = self._config.screening
        return screening if screening.in_session else None

    @property
    def scorer(self) -> Scorer:
        """The scorer in use (the rules' points, or the learned model: ``[model]``)."""
        return self._scorer

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def normalizer(self) -> Normalizer:
        return self._normalizer

    def apply_config(self, config: Config) -> None:
        """Take a new configuration (SIGHUP). Storage settings apply at the next start only."""
        self._config = config
        self._scorer: Scorer = self._custom_scorer or scorer_for(config)
        self._critical: tuple[Pattern, ...] = tuple(parse_pattern(p) for p in config.safety.critical)
        self._trunks: dict[str, NumberingConfig] = {n.trunk: n for n in config.numbering if n.trunk}
        self._did_overrides = tuple((parse_pattern(n.did), n) for n in config.numbering if n.did)
        self._home_country = phonenumbers.country_code_for_region(config.node.default_region)
        mesh = config.mesh
        self.peer_quorum = mesh.quorum
        self._privacy_key = mesh.privacy_secret() if mesh.privacy else None
        self.peers.set_trust(default_trust=mesh.trust, trust=mesh.peer_trust)
        self.reload_rules()

    def reload_rules(self) -> None:
        config_rules = [Rule.compile(spec, source=f"config:rules[{i}]") for i, spec in enumerate(self._config.rules)]
        self.rules = RuleSet(config_rules + self.lists.rules())

    # --- deciding -------------------------------------------------------------------------------

    def normalize_call(self, call: Call) -> tuple[NumberInfo, NumberInfo | None, str]:
        """Caller and callee of ``call`` normalized with the right region, and the call's tenant."""
        region = self._config.node.default_region
        tenant = call.tenant
        trunk = self._trunks.get(call.trunk) if call.trunk else None
        if trunk is not None:
            region = trunk.region or region
            tenant = tenant or trunk.tenant
        callee = self._normalizer.normalize(call.callee, region=region) if call.callee else None
        if self._did_overrides and callee is not None and callee.e164 is not None:
            for pattern, override in self._did_overrides:
                if pattern.matches_e164(callee.e164):
                    region = override.region or region
                    tenant = tenant or override.tenant
                    break
        caller = self._normalizer.normalize(call.caller, region=region, presentation=call.presentation)
        return caller, callee, tenant

    def decide(self, call: Call, *, record: bool = True) -> Verdict:
        """Decide ``call``. With ``record=False`` nothing is remembered (``callshield check``)."""
        now = call.started_at if call.started_at is not None else self._clock.now()
        caller, callee, tenant = self.normalize_call(call)
        callee_label = _callee_label(call.callee, callee)
        key = caller.key
        peer = NO_PEERS
        if key is not None:
            reputation = self.store.view(key, now)
            if self.peers.subjects():
                peer = self.peers.view(self.peer_subject(caller), now)
                if peer.nodes:
                    reputation = _replace(reputation, peer_bad=reputation.peer_bad + peer.weight)
            callee_key = callee.key if callee is not None and callee.key is not None else _text_key(callee_label)
            pattern = self.patterns.observe(key, callee_key, now, commit=record)
            ranges = self.ranges.observe(key, now, new=not reputation.known, commit=record)
        else:
            reputation, pattern, ranges = UNKNOWN_VIEW, NO_PATTERN, NO_RANGE
        features = feature_vector(
            caller, callee, reputation, pattern, now, home_country=self._home_country, ranges=ranges
        )
        score, findings = self._scorer.score(features)
        decided, score, reasons, cause = self._precedence(
            call, caller, callee, callee_label, tenant, now, score, findings, peer
        )
        mode = self._config.policy.mode
        verdict = Verdict(
            id=decision_id(now),
            action=decided if mode is _ENFORCE else _CONNECT,
            decided=decided,
            score=score,
            reason=reasons[0].code if reasons else "clean",
            reasons=reasons,
            cause=cause,
            mode=mode,
            caller=caller.label(),
            callee=callee_label,
            decided_at=now,
            features=features,
        )
        if record:
            self._remember(verdict, key, call.channel)
        return verdict

    def _precedence(
        self,
        call: Call,
        caller: NumberInfo,
        callee: NumberInfo | None,
        callee_label: str,
        tenant: str,
        now: float,
        score: int,
        findings: tuple[Reason, ...],
        peer: PeerView = NO_PEERS,
    ) -> tuple[Action, int, tuple[Reason, ...], int]:
        cause = self._config.policy.block_cause
        safety = self._safety(call, caller, callee)
        if safety is not None:
            return _CONNECT, 0, (safety, *findings), cause
        rule = self.rules.match(caller, callee=callee.e164 if callee else None, tenant=tenant, when=now)
        if rule is not None:
            why = Reason(
                code=rule.reason_code,
                points=0.0,
                detail=f"{rule.spec.action.value} {rule.pattern.text} ({rule.source}"
                f"{': ' + rule.spec.note if rule.spec.note else ''})",
            )
            if rule.action is _ALLOW:
                return _CONNECT, 0, (why, *findings), cause
            return _BLOCK, 100, (why, *findings), rule.spec.cause or cause
        if caller.key is not None:
            expires = self._passes.get((caller.key, callee_label))
            if expires is not None and now < expires:
                why = Reason(code="screen:passed", points=0.0, detail="passed screening recently for this callee")
                return _CONNECT, score, (why, *findings), cause
        action = action_for(score, self._config.policy)
        if action is _BLOCK and peer.nodes:
            action, findings = self._peer_quorum(score, findings, peer)
        if action is _SCREEN and caller.key is not None:
            limit = self._challenge_limit(caller.key, caller.label(), now)
            if limit is not None:
                return _BLOCK, score, (limit, *findings), cause
        return action, score, findings, cause

    def _peer_quorum(
        self, score: int, findings: tuple[Reason, ...], peer: PeerView
    ) -> tuple[Action, tuple[Reason, ...]]:
        """A block that needs peer evidence needs a quorum of distinct blocking nodes; else screen."""
        # The score this node's own findings give (the expert scorer's sum, clipped the same way; a
        # learned scorer must report the peer feature's share as a reputation:peer finding too).
        local = max(0, min(100, round(sum(r.points for r in findings if r.code != _PEER_REASON))))
        if action_for(local, self._config.policy) is _BLOCK:
            return _BLOCK, findings  # this node's own evidence blocks
        quorum = self.peer_quorum
        if peer.allows_block(quorum):
            why = Reason(code="peer:quorum", points=0.0, detail=f"{peer.blockers} peer nodes block this caller")
            return _BLOCK, (why, *findings)
        why = Reason(
            code="peer:no-quorum",
            points=0.0,
            detail=f"peer evidence alone blocks only with {quorum} blocking nodes ({peer.blockers} do): screened",
        )
        return _SCREEN, (why, *findings)

    def _challenge_limit(self, key: int, caller: str, now: float) -> Reason | None:
        """The reason to block instead of screening when the caller had its challenges for the window."""
        screening = self._config.screening
        times = self._challenge_times(key, caller, now)
        if len(times) < screening.max_challenges:
            return None
        return Reason(
            code="screen:limit",
            points=0.0,
            detail=f"{len(times)} screening challenges within {screening.challenge_window:g} s: blocked",
        )

    def _challenge_times(self, key: int, caller: str, now: float) -> tuple[float, ...]:
        since = now - self._config.screening.challenge_window
        times = self._challenges.get(key)
        if times is None:
            times = self.audit.screen_times(caller, since)
        else:
            self._challenges.move_to_end(key)
        return tuple(t for t in times if t >= since)

    def _count_challenge(self, key: int, caller: str, now: float) -> None:
        challenges = self._challenges
        challenges[key] = (*self._challenge_times(key, caller, now), now)
        challenges.move_to_end(key)
        if len(challenges) > CHALLENGED_CALLERS:
            challenges.popitem(last=False)

    def _safety(self, call: Call, caller: NumberInfo, callee: NumberInfo | None) -> Reason | None:
        region = caller.region or self._config.node.default_region
        # Emergency numbers are short codes: a full number (an E.164 DID, say) never is one.
        callee_short = callee is None or callee.kind is not _NUMBER
        if (call.callee and callee_short and self._normalizer.is_emergency(call.callee, region=region)) or (
            caller.kind is _SHORT_CODE and self._normalizer.is_emergency(call.caller, region=region)
        ):
            return Reason(code="safety:emergency", points=0.0, detail="emergency number: always connected")
        for pattern in self._critical:
            if pattern.matches(caller) or (callee is not None and pattern.matches_e164(callee.e164)):
                return Reason(
                    code="safety:critical",
                    points=0.0,
                    detail=f"critical number {pattern.text}: always connected",
                )
        return None

    def _remember(self, verdict: Verdict, key: int | None, channel: str) -> None:
        now = verdict.decided_at
        if key is not None:
            self.store.record_call(key, now)
            if verdict.decided is _BLOCK:
                self.store.add_evidence(key, EvidenceKind.BLOCK, now)
            elif verdict.action is _SCREEN:
                self._count_challenge(key, verdict.caller, now)
            if self.on_shared is not None and verdict.decided is not _CONNECT:
                self.on_shared(verdict)
        self.audit.record(verdict, channel=channel)
        recent = self._recent
        if len(recent) >= RECENT_DECISIONS:
            recent.popitem(last=False)
        recent[verdict.id] = _Recent(key, verdict.callee, now, verdict.action)
        self.counters[verdict.action] += 1

    # --- learning -------------------------------------------------------------------------------

    def _lookup(self, decision_id: str) -> _Recent | None:
        found = self._recent.get(decision_id)
        if found is not None:
            return found
        record = self.audit.get(decision_id)
        if record is None:
            return None
        key = int(record.caller[1:]) if record.caller.startswith("+") else None
        return _Recent(key, record.callee, record.ts, Action(record.action))

    def feedback(self, outcome: CallOutcome) -> bool:
        """Learn from how a decided call ended; ``False`` if the decision id is unknown or already has its outcome.

        Taken once per decision: with ``CALLSHIELD_VIA=ari`` both the ARI app and the dialplan's
        hangup handler may report the same call, and the second report must not count it twice.
        """
        found = self._lookup(outcome.decision_id)
        if found is None:
            self.counters["feedback:unknown"] += 1
            return False
        if not self._first_feedback(outcome.decision_id):
            self.counters["feedback:duplicate"] += 1
            return False
        ended_at = outcome.ended_at if outcome.ended_at is not None else self._clock.now()
        billsec = outcome.billsec if outcome.billsec >= 0 else 0.0
        self.audit.record_outcome(outcome, ended_at)
        self.counters["feedback"] += 1
        if found.caller_key is None:
            return True
        key = found.caller_key
        if found.action is Action.BLOCK:
            self.patterns.ended(key, ended_at, answered=False, short=False, counted=False)
            return True
        rep = self._config.reputation
        answered = outcome.answered
        short = not answered or billsec < rep.short_call
        self.patterns.ended(key, ended_at, answered=answered, short=short)
        self.ranges.ended(key, ended_at, short=short)
        if answered and billsec >= rep.long_call:
            self.store.add_evidence(key, EvidenceKind.LEGIT_CALL, ended_at)
        elif short:
            self.store.add_evidence(key, EvidenceKind.SHORT_CALL, ended_at)
        return True

    def screened(self, decision_id: str, result: ScreenResult) -> bool:
        """Record a screening challenge's result; a pass allows this caller to this callee for a while."""
        found = self._lookup(decision_id)
        if found is None:
            self.counters["screen:unknown"] += 1
            return False
        if not self._first_screen_result(decision_id):
            self.counters["screen:duplicate"] += 1
            return False
        now = self._clock.now()
        action = Action.CONNECT if result is ScreenResult.PASSED else Action.BLOCK
        self.audit.record_screen(decision_id, result.value, action.value)
        self.counters[f"screen:{result.value}"] += 1
        if found.caller_key is None:
            return True
        if result is ScreenResult.PASSED:
            self.store.add_evidence(found.caller_key, EvidenceKind.SCREEN_PASSED, now, log=True, source="screening")
            expires = now + self._config.screening.pass_ttl
            self._passes[(found.caller_key, found.callee)] = expires
            self._pass_writes.append((found.caller_key, found.callee, expires))
        else:
            if self.on_screen_failed is not None:
                self.on_screen_failed(f"+{found.caller_key}")
            self.store.add_evidence(
                found.caller_key,
                EvidenceKind.SCREEN_FAILED,
                now,
                weight=_SCREEN_WEIGHT[result],
                log=True,
                source="screening",
                note=result.value,
            )
        return True

    def _first_screen_result(self, decision_id: str) -> bool:
        """True once per decision: the challenge's result is taken from the session that ran it, and
        a copy arriving later (the hangup feedback) is ignored."""
        seen = self._screened_ids
        if decision_id in seen:
            return False
        if decision_id not in self._recent:
            record = self.audit.get(decision_id)
            if record is not None and record.screen is not None:
                return False
        seen[decision_id] = None
        if len(seen) > SCREENED_IDS:
            seen.popitem(last=False)
        return True

    def _first_feedback(self, decision_id: str) -> bool:
        """True once per decision id. Recent ids are remembered in memory (bounded); an older one is
        known to be done when its committed audit row has an end time."""
        seen = self._fed_back_ids
        if decision_id in seen:
            return False
        if decision_id not in self._recent:
            record = self.audit.get(decision_id)
            if record is not None and record.ended is not None:
                return False
        seen[decision_id] = None
        if len(seen) > FED_BACK_IDS:
            seen.popitem(last=False)
        return True

    # --- the mesh --------------------------------------------------------------------------------

    def peer_subject(self, caller: NumberInfo) -> str:
        """What the mesh calls this caller: its E.164, or in privacy mode its keyed hash."""
        e164 = caller.e164 or ""
        if self._privacy_key is None or not e164:
            return e164
        return subject_for(e164, self._privacy_key)

    def peer_verdict(self, *, subject: str, node: str, kind: PeerKind, seq: int, at: float, ttl: float) -> bool:
        """A verified verdict from a peer node (the mesh's receiver calls this); False if stale."""
        added = self.peers.add(subject=subject, node=node, kind=kind, seq=seq, at=at, ttl=ttl)
        self.counters["peer:accepted" if added else "peer:stale"] += 1
        return added

    def peer_revoke(self, *, subject: str, node: str, seq: int) -> bool:
        """A peer withdraws its verdicts on a subject (an admin unlist there)."""
        self.counters["peer:revoked"] += 1
        return self.peers.revoke(subject=subject, node=node, seq=seq)

    def report(
        self,
        raw: str,
        *,
        kind: EvidenceKind = EvidenceKind.REPORT,
        weight: float | None = None,
        source: str = "cli",
        note: str = "",
    ) -> NumberInfo:
        """A spam report (or other evidence) about a number; raise ValueError if it is not a number."""
        info = self._normalizer.normalize(raw)
        if info.key is None:
            raise ValueError(f"{info.raw!r} is not a phone number ({info.kind.value})")
        self.store.add_evidence(info.key, kind, self._clock.now(), weight=weight, log=True, source=source, note=note)
        return info

    # --- persistence ----------------------------------------------------------------------------

    def _take_writes(self, *, force_snapshot: bool = False) -> list[db.Statement]:
        now = self._clock.now()
        snapshot = force_snapshot or now - self._last_snapshot >= self._config.patterns.snapshot_interval
        statements = self._retry + self.store.take_writes(sightings=snapshot) + self.audit.take_writes()
        statements += self.peers.take_writes()
        if self._pass_writes:
            statements.append(
                (
                    "INSERT INTO screen_passes (caller, callee, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT (caller, callee) DO UPDATE SET expires = excluded.expires",
                    self._pass_writes,
                )
            )
            self._pass_writes = []
        if self._external_writer and statements:
            statements.append(db.BUMP_GENERATION)  # only real changes make a running server reload
        if snapshot and not self._external_writer:  # a CLI process has no call windows to keep
            statements += self.patterns.take_writes(now)
            self._last_snapshot = now
        self._retry = []
        return statements

    def _restore_writes(self, statements: list[db.Statement]) -> None:
        self._retry = statements  # replayed first, in order, at the next flush

    def pending(self) -> int:
        return self.store.pending_count() + self.audit.pending_count() + len(self._retry)

    def flush(self, *, snapshot: bool = False) -> int:
        """Commit buffered writes in one transaction (synchronously); return statements written.

        Pattern windows are snapshotted every ``patterns.snapshot_interval``, or now with ``snapshot``.
        """
        statements = self._take_writes(force_snapshot=snapshot)
        if not statements:
            return 0
        try:
            db.apply(self._conn, statements)
        except sqlite3.Error as exc:
            self._restore_writes(statements)
            self.counters["flush:failed"] += 1
            log.warning("database write failed, will retry: %s", exc)
            return 0
        self.store.committed()
        if not self._external_writer:
            self._generation = db.generation(self._conn)
        return len(statements)

    async def flush_async(
        self, writer: sqlite3.Connection, executor: Executor | None = None, *, snapshot: bool = False
    ) -> int:
        """Commit buffered writes on ``writer`` in ``executor``'s thread (the server's writer).

        The whole transaction (BEGIN, every statement, COMMIT) runs in one hop on that thread and
        never waits for the event loop, so the write lock is never held across the loop: a
        synchronous write on the loop (the mesh outbox) waits at most for one batch, not forever.
        """
        statements = self._take_writes(force_snapshot=snapshot)
        if not statements:
            return 0
        try:
            await asyncio.get_running_loop().run_in_executor(executor, db.apply, writer, statements)
        except sqlite3.Error as exc:
            self._restore_writes(statements)
            self.counters["flush:failed"] += 1
            log.warning("database write failed, will retry: %s", exc)
            return 0
        self.store.committed()
        return len(statements)

    def maintenance(self) -> None:
        """Periodic upkeep: pick up changes other processes made, expire old audit rows and passes."""
        current = db.generation(self._conn)
        if current != self._generation:
            self._generation = current
            self.store.invalidate()
            self.reload_rules()
            log.info("database changed by another process: lists reloaded, cache dropped")
        now = self._clock.now()
        self._passes = {k: v for k, v in self._passes.items() if v > now}
        self._retry.append(self.audit.prune_statement(now - self._config.storage.audit_retention))
        self._retry.append(("DELETE FROM screen_passes WHERE expires < ?", [(now,)]))
        self.peers.expire(now)

    def _load_passes(self, now: float) -> None:
        for caller, callee, expires in self._conn.execute(
            "SELECT caller, callee, expires FROM screen_passes WHERE expires > ?", (now,)
        ):
            self._passes[(caller, callee)] = expires

    def close(self) -> None:
        """Flush (with a pattern snapshot) and close the database."""
        self.flush(snapshot=True)
        self._conn.close()


def _callee_label(raw: str, callee: NumberInfo | None) -> str:
    if callee is not None and callee.e164 is not None:
        return callee.e164
    return "".join(ch for ch in raw[:32] if ch.isprintable())


def _text_key(label: str) -> int:
    """A stable non-number callee key (extensions like ``s`` or ``100``): negative, never a sweep step."""
    return NO_CALLEE - zlib.crc32(label.encode("utf-8", "replace"))
