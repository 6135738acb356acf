"""Admin operations shared by the CLI and the admin HTTP API: list entries, reports, their mesh
events, and the read-only summaries (stats, mesh status, config warnings).

Both front ends call these, so an entry added with ``callshield deny`` and one added with
``POST /api/v1/lists`` are validated, stored and shared with the mesh the same way. Errors a user
can fix raise :class:`AdminInputError` naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callshield.config import Config, parse_duration
from callshield.engine import Firewall
from callshield.errors import CallshieldError, RuleError
from callshield.liststore import ListStore
from callshield.numbers import Normalizer, NumberInfo
from callshield.reputation import EvidenceKind
from callshield.rules import Rule, RuleAction, RuleSet, RuleSpec, parse_pattern

STATUS_STALE = 5.0
"""Seconds after which a saved mesh status means the server is not running (it saves every second)."""


class AdminInputError(CallshieldError):
    """A value given by an admin is unusable; ``field`` names it (``pattern``, ``ttl``, ...)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def number_argument(normalizer: Normalizer, raw: str, *, field: str = "number") -> str:
    """The E.164 form of ``raw`` (national numbers use the normalizer's default region)."""
    info = normalizer.normalize(raw)
    if info.e164 is None:
        raise AdminInputError(f"{info.raw!r} is not a phone number ({info.kind.value})", field=field)
    return info.e164


def entry_pattern(normalizer: Normalizer, raw: str, *, field: str = "pattern") -> str:
    """A list pattern as stored: patterns must be E.164 already; a plain national number is normalized."""
    try:
        return parse_pattern(raw).text
    except RuleError as exc:
        if any(ch in raw for ch in "*?["):
            raise AdminInputError(str(exc), field=field) from None
        return number_argument(normalizer, raw, field=field)


def new_entry(
    normalizer: Normalizer,
    action: RuleAction,
    pattern: str,
    *,
    dids: tuple[str, ...] = (),
    tenants: tuple[str, ...] = (),
    ttl: str | float | None = None,
    note: str = "",
    now: float,
) -> RuleSpec:
    """Validate an allow/deny entry (``ttl``: seconds or ``"90m"``, ``"24h"``, ``"30d"``)."""
    text = entry_pattern(normalizer, pattern)
    scoped = tuple(entry_pattern(normalizer, d, field="dids") for d in dids)
    expires = None
    if ttl is not None and ttl != "":
        try:
            seconds = parse_duration(ttl)
        except ValueError as exc:
            raise AdminInputError(str(exc), field="ttl") from None
        if seconds <= 0:
            raise AdminInputError("ttl must be positive", field="ttl")
        expires = datetime.fromtimestamp(now, UTC) + timedelta(seconds=seconds)
    for tenant in tenants:
        if not tenant or len(tenant) > 64 or not tenant.isprintable():
            raise AdminInputError(f"tenant {tenant!r} must be 1-64 printable characters", field="tenants")
    if len(note) > 500:
        raise AdminInputError("note is longer than 500 characters", field="note")
    try:
        return RuleSpec(action=action, pattern=text, dids=scoped, tenants=tenants, expires=expires, note=note)
    except ValueError as exc:
        raise AdminInputError(str(exc), field="pattern") from None


def add_entry(lists: ListStore, spec: RuleSpec, *, now: float, source: str) -> int:
    """Store an entry; return its id. The generation bump makes running servers reload their rules
    (a server's own API also calls ``Firewall.reload_rules`` at once)."""
    return lists.add(spec, now=now, source=source)


def remove_entries(
    lists: ListStore, pattern: str, *, dids: tuple[str, ...] | None = None, action: RuleAction | None = None
) -> int:
    """Delete the entries for ``pattern`` (with exactly this DID scope / action when given); how many."""
    return lists.remove(pattern, dids=dids, action=action)


def revokes_on_mesh(pattern: str) -> bool:
    """An unlisted exact number is revoked on the mesh: peers drop this node's verdicts on it."""
    return pattern.startswith("+") and pattern[1:].isdigit()


def share_event(config: Config, database: Path, *, kind: str, e164: str, now: float) -> int | None:
    """Put a report or revocation about an E.164 number in the mesh outbox of the node whose
    database is ``database`` (the running server publishes it); return its sequence number, or
    None when the mesh is off."""
    if not config.mesh.enabled or not e164:
        return None
    from callshield.mesh import MessageKind
    from callshield.meshlink import enqueue_event
    from callshield.outbox import Outbox

    box = Outbox.open(database)
    try:
        return enqueue_event(config, box, kind=MessageKind(kind), caller=e164, now=now)
    finally:
        box.connection.close()


def report_number(firewall: Firewall, raw: str, *, admin: bool = False, note: str = "", source: str) -> NumberInfo:
    """Record a spam report (an admin's weighs 3); raise AdminInputError if ``raw`` is not a number."""
    if len(note) > 500:
        raise AdminInputError("note is longer than 500 characters", field="note")
    try:
        return firewall.report(
            raw, kind=EvidenceKind.ADMIN_REPORT if admin else EvidenceKind.REPORT, note=note, source=source
        )
    except ValueError as exc:
        raise AdminInputError(str(exc), field="number") from None


def list_rows(firewall: Firewall) -> list[dict[str, Any]]:
    """Every allow/deny rule in force: CLI/API-managed entries and the config file's rules."""
    return [
        {
            "source": r.source,
            "action": r.action.value,
            "pattern": r.pattern.text,
            "dids": list(r.spec.dids),
            "tenants": list(r.spec.tenants),
            "expires": r.spec.expires.isoformat() if r.spec.expires else None,
            "note": r.spec.note,
        }
        for r in firewall.rules.rules
    ]


def stats(firewall: Firewall, *, since: str, now: float) -> dict[str, Any]:
    """Decisions by action and reason since ``since`` (a duration), and the database's size."""
    try:
        period = parse_duration(since)
    except ValueError as exc:
        raise AdminInputError(str(exc), field="since") from None
    counts = firewall.audit.counts(now - period)
    return {
        "since": since,
        "decisions": counts["action"],
        "reasons": counts["reason"],
        "numbers": firewall.store.count(),
        "list_entries": len(firewall.rules),
    }


def mesh_status(
    config: Config, database: Path, *, now: float, live: dict[str, object] | None = None
) -> dict[str, Any]:
    """The mesh link's status: ``live`` from the running link, else what a running server last saved
    (in the mesh database beside ``database``; no file is made for a node without the mesh)."""
    if live is not None:  # the running link's status already holds its outbox depth
        return {**live, "server_running": True, "enabled": config.mesh.enabled}
    from callshield.meshlink import read_status
    from callshield.outbox import Outbox, mesh_database_path

    saved: dict[str, object] = {}
    depth = 0
    if config.mesh.enabled or Path(mesh_database_path(database)).exists():
        box = Outbox.open(database)
        try:
            depth = box.depth()
            saved = read_status(box.connection) or {}
        finally:
            box.connection.close()
    at = saved.get("at")
    running = isinstance(at, (int, float)) and now - at <= STATUS_STALE
    return {**saved, "outbox": depth, "server_running": running, "enabled": config.mesh.enabled}


def config_warnings(config: Config) -> list[str]:
    """What ``config check`` warns about: allow and deny rules with the same pattern and scope, and
    a learned model that cannot be loaded (the rules would score instead)."""
    rules = RuleSet(Rule.compile(spec, source=f"config:rules[{i}]") for i, spec in enumerate(config.rules))
    warnings = [
        f"{first.source} and {second.source} allow and deny the same pattern "
        f"{first.pattern.text} with the same scope: the allow wins"
        for first, second in rules.conflicts()
    ]
    if config.model.scorer == "model":
        from callshield.model import ModelError, ModelScorer, model_path

        try:
            ModelScorer.load(model_path(config))
        except ModelError as exc:
            warnings.append(f"model: {exc}; the rules will score instead")
    return warnings
