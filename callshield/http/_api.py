"""The JSON API under ``/api/v1/``: handlers and their route table (documented in ``_openapi.py``).

Reads run on the event loop against the running firewall (the same data the CLI shows). Writes go
through :mod:`callshield.admin` like the CLI's, on the admin thread's own connection, and each one
is recorded in the audit trail (``admin_actions``) with its outcome, failures included.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web

from callshield import admin
from callshield.audit import DecisionRecord
from callshield.config import load_config, parse_duration
from callshield.errors import CallshieldError
from callshield.explain import explain
from callshield.http._app import ApiError, HttpContext, actor_of, context, dumps
from callshield.liststore import ListStore
from callshield.rules import RuleAction
from callshield.verdict import Action, Call

_B = TypeVar("_B", bound=msgspec.Struct)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ACTIONS = tuple(a.value for a in Action)
MAX_LIMIT = 1000
_DECISION_ID = re.compile(r"[0-9a-f]{20}")


# --- request bodies ------------------------------------------------------------------------------


class ListEntryBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    action: Literal["allow", "deny"]
    pattern: str
    dids: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    ttl: str | float | None = None
    note: str = ""


class ReportBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    number: str
    note: str = ""
    admin: bool = False


_FIELD = re.compile(r"`\$\.([A-Za-z_]+)")
_NAMED_FIELD = re.compile(r"field `([^`]+)`")


async def _body(request: web.Request, kind: type[_B]) -> _B:
    """Decode a JSON body into ``kind``; a 400 naming the field otherwise."""
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _FIELD.search(message) or _NAMED_FIELD.search(message)
        raise ApiError(400, f"invalid body: {message}", field=found.group(1) if found else None) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", field=name) from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}", field=name)
    return value


def _since_param(request: web.Request, name: str = "since") -> float | None:
    """A duration back from now (``90m``, ``24h``, ``7d``, seconds) as a timestamp."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise ApiError(400, f"{name}: {exc}", field=name) from None
    return context(request).firewall.clock.now() - seconds


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def _input_error(exc: admin.AdminInputError) -> ApiError:
    return ApiError(400, str(exc), field=exc.field)


def decision_json(d: DecisionRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "ts": d.ts,
        "caller": d.caller,
        "callee": d.callee,
        "action": d.action,
        "decided": d.decided,
        "score": d.score,
        "reason": d.reason,
        "reasons": d.reasons,
        "mode": d.mode,
        "outcome": {"dialstatus": d.dialstatus, "billsec": d.billsec, "hangup_cause": d.hangup_cause}
        if d.ended is not None
        else None,
        "screen": d.screen,
    }


# --- the audit trail of writes --------------------------------------------------------------------


@dataclass
class Audit:
    """What a write handler tells the audit trail, filled in as soon as it knows it."""

    actor: str
    target: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"


WriteHandler = Callable[[web.Request, Audit], Awaitable[web.StreamResponse]]


def audited(action: str) -> Callable[[WriteHandler], Handler]:
    """Record the wrapped write handler's outcome (success or refusal) in the audit trail."""

    def wrap(handler: WriteHandler) -> Handler:
        @wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            ctx = context(request)
            audit = Audit(actor=actor_of(request))
            try:
                response = await handler(request, audit)
            except admin.AdminInputError as exc:
                error = _input_error(exc)
                await _record(ctx, audit, action, error.status, error.message)
                raise error from None
            except ApiError as exc:
                await _record(ctx, audit, action, exc.status, exc.message)
                raise
            except web.HTTPException as exc:  # e.g. 413: the body was too large
                await _record(ctx, audit, action, exc.status, exc.reason)
                raise
            except Exception:
                await _record(ctx, audit, action, 500, "internal error")
                raise
            await _record(ctx, audit, action, response.status, audit.result)
            return response

        return run

    return wrap


async def _record(ctx: HttpContext, audit: Audit, action: str, status: int, result: str) -> None:
    now = ctx.firewall.clock.now()

    def record(conn: sqlite3.Connection) -> int:
        return ctx.trail.record(
            ts=now,
            actor=audit.actor,
            action=action,
            target=audit.target,
            detail=audit.detail,
            status=status,
            result=result,
        )

    await ctx.write(record)


# --- decisions and explanations --------------------------------------------------------------------


async def list_decisions(request: web.Request) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    action = request.query.get("action") or None
    if action is not None and action not in ACTIONS:
        raise ApiError(400, f"action must be one of {', '.join(ACTIONS)}", field="action")
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    since = _since_param(request)
    caller = None
    number = request.query.get("number")
    if number:
        info, _, _ = fw.normalize_call(Call(caller=number))
        caller = info.label()
    rows = fw.audit.recent(limit, action=action, caller=caller, since=since)
    return _json({"decisions": [decision_json(d) for d in rows], "number": caller})


async def get_decision(request: web.Request) -> web.Response:
    decision_id = request.match_info["id"]
    if not _DECISION_ID.fullmatch(decision_id):
        raise ApiError(400, "a decision id is 20 lowercase hex digits", field="id")
    record = context(request).firewall.audit.get(decision_id)
    if record is None:
        raise ApiError(404, f"no decision {decision_id} (not committed yet, or older than the audit retention)")
    return _json(decision_json(record))


async def explain_number(request: web.Request) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    number = request.match_info["number"]
    if not number or len(number) > 64:
        raise ApiError(400, "number must be 1-64 characters", field="number")
    limit = _int_param(request, "limit", 20, 1, 200)
    all_since = None
    if "all" in request.query:
        try:
            days = float(request.query["all"])
        except ValueError:
            raise ApiError(400, "all must be a number of days", field="all") from None
        if not 0 < days <= 366:
            raise ApiError(400, "all must be between 0 and 366 days", field="all")
        all_since = fw.clock.now() - days * 86400
    return _json(explain(fw, number, callee=request.query.get("did", ""), limit=limit, all_since=all_since))


# --- lists -----------------------------------------------------------------------------------------


async def get_lists(request: web.Request) -> web.Response:
    return _json({"entries": admin.list_rows(context(request).firewall)})


@audited("lists.add")
async def add_list_entry(request: web.Request, audit: Audit) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    body = await _body(request, ListEntryBody)
    audit.target, audit.detail = body.pattern, msgspec.to_builtins(body)
    spec = admin.new_entry(
        fw.normalizer,
        RuleAction(body.action),
        body.pattern,
        dids=body.dids,
        tenants=body.tenants,
        ttl=body.ttl,
        note=body.note,
        now=fw.clock.now(),
    )
    audit.target = spec.pattern
    source = f"api:{audit.actor}"
    now = fw.clock.now()
    entry_id = await ctx.write(lambda conn: admin.add_entry(ListStore(conn), spec, now=now, source=source))
    fw.reload_rules()  # in force for the next call, not at the next maintenance tick
    audit.result = f"list:{entry_id}"
    return _json(
        {
            "id": entry_id,
            "source": f"list:{entry_id}",
            "action": spec.action.value,
            "pattern": spec.pattern,
            "dids": list(spec.dids),
            "tenants": list(spec.tenants),
            "expires": spec.expires.isoformat() if spec.expires else None,
            "note": spec.note,
        },
        status=201,
    )


@audited("lists.remove")
async def remove_list_entries(request: web.Request, audit: Audit) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    raw = request.query.get("pattern", "")
    audit.target = raw
    if not raw:
        raise ApiError(400, "pattern is required", field="pattern")
    pattern = admin.entry_pattern(fw.normalizer, raw)
    audit.target = pattern
    dids = tuple(admin.entry_pattern(fw.normalizer, d, field="did") for d in request.query.getall("did", []))
    action = request.query.get("action") or None
    if action is not None and action not in ("allow", "deny"):
        raise ApiError(400, "action must be allow or deny", field="action")
    audit.detail = {"dids": list(dids), "action": action}
    config = ctx.config()
    now = fw.clock.now()
    chosen = RuleAction(action) if action else None

    def remove(conn: sqlite3.Connection) -> tuple[int, int | None]:
        removed = admin.remove_entries(ListStore(conn), pattern, dids=dids or None, action=chosen)
        seq = None
        if removed and admin.revokes_on_mesh(pattern):  # peers drop this node's verdicts on the number
            seq = admin.share_event(config, ctx.database, kind="revoke", e164=pattern, now=now)
        return removed, seq

    removed, seq = await ctx.write(remove)
    if not removed:
        raise ApiError(404, f"no list entry for {pattern}", field="pattern")
    fw.reload_rules()
    audit.result = f"removed {removed}" + (f", mesh revoke seq {seq}" if seq is not None else "")
    return _json({"removed": removed, "pattern": pattern, "mesh_seq": seq})


# --- reports ---------------------------------------------------------------------------------------


@audited("reports.add")
async def add_report(request: web.Request, audit: Audit) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    body = await _body(request, ReportBody)
    audit.target, audit.detail = body.number, msgspec.to_builtins(body)
    info = admin.report_number(fw, body.number, admin=body.admin, note=body.note, source=f"api:{audit.actor}")
    e164 = info.e164 or ""
    audit.target = e164
    config, now = ctx.config(), fw.clock.now()
    seq = await ctx.write(lambda _: admin.share_event(config, ctx.database, kind="report", e164=e164, now=now))
    audit.result = "reported" + (f", mesh seq {seq}" if seq is not None else "")
    return _json({"number": e164, "admin": body.admin, "mesh_seq": seq}, status=201)


# --- summaries -------------------------------------------------------------------------------------


async def get_stats(request: web.Request) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    since = request.query.get("since", "24h")
    top = _int_param(request, "top", 10, 0, 100)
    now = fw.clock.now()
    try:
        data = admin.stats(fw, since=since, now=now)
    except admin.AdminInputError as exc:
        raise _input_error(exc) from None
    start = now - parse_duration(since)
    data["top_blocked"] = [{"caller": c, "blocks": n} for c, n in fw.audit.top_callers(start, limit=top)] if top else []
    data["top_ranges"] = (
        [
            {"prefix": p + "*", "blocks": n, "callers": callers}
            for p, n, callers in fw.audit.top_prefixes(start, limit=top)
        ]
        if top
        else []
    )
    return _json(data)


async def get_live(request: web.Request) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    counters = fw.counters
    return _json(
        {
            "at": fw.clock.now(),
            "started": ctx.started,
            "decisions": {a.value: counters[a] for a in Action},
            "pending_writes": fw.pending(),
            "node": ctx.config().node.node_name,
        }
    )


async def get_mesh(request: web.Request) -> web.Response:
    ctx = context(request)
    fw = ctx.firewall
    live = ctx.mesh_status() if ctx.mesh_status is not None else None
    return _json(admin.mesh_status(ctx.config(), ctx.database, now=fw.clock.now(), live=live))


async def get_config(request: web.Request) -> web.Response:
    """The running configuration's summary and warnings, and whether the file on disk would reload."""
    ctx = context(request)
    config = ctx.config()
    file: dict[str, Any] = {"path": ctx.config_path, "valid": True, "error": None, "same_as_running": True}
    if ctx.config_path:
        try:
            on_disk = load_config(ctx.config_path)
        except CallshieldError as exc:
            file.update(valid=False, error=str(exc), same_as_running=False)
        else:
            file["same_as_running"] = on_disk == config
    cluster, node = config.mesh_identity()
    return _json(
        {
            "ok": True,
            "node": config.node.node_name,
            "default_region": config.node.default_region,
            "mode": config.policy.mode.value,
            "screen_at": config.policy.screen_at,
            "block_at": config.policy.block_at,
            "rules": len(config.rules),
            "list_entries": len(ctx.firewall.rules) - len(config.rules),
            "database": str(ctx.database),
            "mesh": {"enabled": config.mesh.enabled, "cluster": cluster, "node": node},
            "warnings": admin.config_warnings(config),
            "file": file,
        }
    )


async def get_admin_actions(request: web.Request) -> web.Response:
    ctx = context(request)
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    actor = request.query.get("actor") or None
    actions = await ctx.write(lambda conn: ctx.trail.recent(limit, actor=actor))
    return _json({"actions": actions})


async def get_openapi(_: web.Request) -> web.Response:
    from callshield.http._openapi import document

    return _json(document())


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/api/v1/decisions", list_decisions),
    ("GET", "/api/v1/decisions/{id}", get_decision),
    ("GET", "/api/v1/explain/{number}", explain_number),
    ("GET", "/api/v1/lists", get_lists),
    ("POST", "/api/v1/lists", add_list_entry),
    ("DELETE", "/api/v1/lists", remove_list_entries),
    ("POST", "/api/v1/reports", add_report),
    ("GET", "/api/v1/stats", get_stats),
    ("GET", "/api/v1/live", get_live),
    ("GET", "/api/v1/mesh", get_mesh),
    ("GET", "/api/v1/config", get_config),
    ("GET", "/api/v1/admin-actions", get_admin_actions),
    ("GET", "/api/v1/openapi.json", get_openapi),
)
"""Every API route: (method, path, handler). The OpenAPI document must list exactly these (tested)."""
