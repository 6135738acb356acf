"""The admin HTTP API against a real Firewall on a temp database, through aiohttp's test client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from callshield.http import HttpContext, make_app, new_token
from callshield.http._api import ROUTES
from callshield.http._auth import load_tokens
from callshield.http._openapi import document
from callshield.mesh import decode_payload
from callshield.outbox import Outbox
from callshield.verdict import Call
from tests.conftest import FirewallFactory

MESH = (
    '[node]\nname = "pbx-a"\n[mesh]\nenabled = true\ncluster = "acme"\n'
    'keys = [{ id = "k1", secret = "' + "ab" * 32 + '" }]\n'
)


class Api:
    def __init__(self, client: TestClient[Any, Any], token: str, ctx: HttpContext, tmp: Path) -> None:
        self.client, self.token, self.ctx, self.tmp = client, token, ctx, tmp
        self.fw = ctx.firewall

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        response = await self.client.get(path, params=params, headers=self.headers())
        return response.status, await response.json()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        response = await self.client.post(path, json=body, headers=self.headers())
        return response.status, await response.json()

    async def delete(self, path: str, params: Any) -> tuple[int, Any]:
        response = await self.client.delete(path, params=params, headers=self.headers())
        return response.status, await response.json()

    def decide(self, caller: str, callee: str = "+13125550100") -> str:
        return self.fw.decide(Call(caller=caller, callee=callee)).action.value


async def _api(make_firewall: FirewallFactory, tmp_path: Path, toml: str = "") -> AsyncIterator[Api]:
    config_file = tmp_path / "cs.toml"
    config_file.write_text(toml)
    fw = make_firewall(toml)
    token_file = tmp_path / "tokens"
    token = new_token(token_file, name="alice")
    ctx = HttpContext(
        firewall=fw,
        config=lambda: fw.config,
        config_path=str(config_file),
        database=tmp_path / "cs.sqlite3",
        tokens=load_tokens(token_file),
        token_path=token_file,
    )
    async with TestClient(TestServer(make_app(ctx, max_body=4096))) as client:
        yield Api(client, token, ctx, tmp_path)
    ctx.close()


@pytest.fixture
async def api(make_firewall: FirewallFactory, tmp_path: Path) -> AsyncIterator[Api]:
    async for item in _api(make_firewall, tmp_path, '[[rules]]\naction = "deny"\npattern = "+1212555*"\n'):
        yield item


@pytest.fixture
async def mesh_api(make_firewall: FirewallFactory, tmp_path: Path) -> AsyncIterator[Api]:
    async for item in _api(make_firewall, tmp_path, MESH):
        yield item


# --- authentication ------------------------------------------------------------------------------


async def test_every_api_call_needs_a_valid_bearer_token(api: Api) -> None:
    for method, path, _ in ROUTES:
        concrete = path.replace("{id}", "0" * 20).replace("{number}", "%2B14155550123")
        refused: list[dict[str, str]] = [
            {},
            {"Authorization": "Bearer wrong-token-wrong-token"},
            {"Authorization": f"Basic {api.token}"},
        ]
        for headers in refused:
            response = await api.client.request(method, concrete, headers=headers)
            assert response.status == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="callshield"')
            assert (await response.json())["status"] == 401
    wrong = await api.client.get("/api/v1/live", headers=api.headers("x" * 43))
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert (await api.client.get("/api/v1/live", headers=api.headers())).status == 200


async def test_the_dashboard_page_loads_without_a_token_with_a_strict_policy(api: Api) -> None:
    page = await api.client.get("/")
    assert page.status == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    html = await page.text()
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == []  # no inline script
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no inline event handler
    script = await api.client.get("/static/app.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert "innerHTML" not in await script.text()  # values are shown with textContent only
    assert (await api.client.get("/static/../app.py")).status == 404


# --- bad requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "deny"}, "pattern"),
        ({"action": "deny", "pattern": 5}, "pattern"),
        ({"action": "maybe", "pattern": "+14155550123"}, "action"),
        ({"action": "deny", "pattern": "+14155550123", "colour": "red"}, "colour"),
        ({"action": "deny", "pattern": "+1415abc*"}, "pattern"),
        ({"action": "deny", "pattern": "not a number"}, "pattern"),
        ({"action": "deny", "pattern": "+14155550123", "ttl": "soon"}, "ttl"),
        ({"action": "deny", "pattern": "+14155550123", "ttl": 0}, "ttl"),
        ({"action": "deny", "pattern": "+14155550123", "dids": ["+1312abc*"]}, "dids"),
        ({"action": "deny", "pattern": "+14155550123", "note": "x" * 501}, "note"),
        ([1, 2], None),
    ],
)
async def test_bad_list_payloads_get_a_400_naming_the_field(api: Api, body: Any, field: str | None) -> None:
    status, data = await api.post("/api/v1/lists", body)
    assert status == 400, data
    assert data.get("field") == field
    assert "Traceback" not in data["error"]


async def test_malformed_and_oversized_bodies_unknown_routes_and_methods(api: Api) -> None:
    headers = {**api.headers(), "Content-Type": "application/json"}
    response = await api.client.post("/api/v1/lists", data=b"{not json", headers=headers)
    assert response.status == 400 and "not valid JSON" in (await response.json())["error"]
    plain = {**api.headers(), "Content-Type": "text/plain"}
    response = await api.client.post("/api/v1/lists", data=b"x=1", headers=plain)
    assert response.status == 415
    big = msgspec.json.encode({"action": "deny", "pattern": "+14155550123", "note": "x" * 10_000})
    response = await api.client.post("/api/v1/lists", data=big, headers=headers)
    assert response.status == 413 and (await response.json())["status"] == 413
    response = await api.client.get("/api/v1/nothing-here", headers=api.headers())
    assert response.status == 404 and (await response.json())["error"] == "Not Found"
    response = await api.client.put("/api/v1/lists", headers=api.headers())
    assert response.status == 405 and set(response.headers["Allow"].split(",")) == {"GET", "POST", "DELETE"}
    for params, field in (({"limit": "many"}, "limit"), ({"limit": "0"}, "limit"), ({"action": "drop"}, "action")):
        status, data = await api.get("/api/v1/decisions", **params)
        assert (status, data["field"]) == (400, field)
    status, data = await api.get("/api/v1/stats", since="yesterday")
    assert (status, data["field"]) == (400, "since")
    status, data = await api.get("/api/v1/decisions/not-an-id")
    assert (status, data["field"]) == (400, "id")
    assert (await api.get("/api/v1/decisions/" + "0" * 20))[0] == 404


async def test_a_failing_handler_is_a_500_without_a_traceback(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.fw.audit, "recent", broken)
    response = await api.client.get("/api/v1/decisions", headers=api.headers())
    text = await response.text()
    assert response.status == 500 and "secret internals" not in text and "Traceback" not in text


# --- lists, reports and their effects ------------------------------------------------------------


async def test_list_changes_apply_to_the_next_decision_of_the_running_engine(api: Api) -> None:
    assert api.decide("+14155550123") == "connect"
    status, entry = await api.post("/api/v1/lists", {"action": "deny", "pattern": "4155550123", "note": "robocall"})
    assert status == 201 and entry["pattern"] == "+14155550123"  # national numbers are normalized
    assert api.decide("+14155550123") == "block"

    status, data = await api.get("/api/v1/lists")
    expected = {"source": entry["source"], "action": "deny", "pattern": "+14155550123"}
    assert expected.items() <= data["entries"][-1].items()

    # allow everywhere beats the prefix deny of the config file
    assert api.decide("+12125550111") == "block"
    status, _ = await api.post("/api/v1/lists", {"action": "allow", "pattern": "+12125550111"})
    assert status == 201 and api.decide("+12125550111") == "connect"

    status, removed = await api.delete("/api/v1/lists", {"pattern": "+14155550123"})
    assert (status, removed["removed"], removed["mesh_seq"]) == (200, 1, None)
    assert api.decide("+14155550123") == "connect"
    status, data = await api.delete("/api/v1/lists", {"pattern": "+14155550123"})
    assert (status, data["field"]) == (404, "pattern")


async def test_scoped_entries_and_ttl(api: Api) -> None:
    status, entry = await api.post(
        "/api/v1/lists",
        {"action": "deny", "pattern": "+1415555*", "dids": ["+13125550100"], "ttl": "1h", "note": "campaign"},
    )
    assert status == 201 and entry["expires"] is not None and entry["dids"] == ["+13125550100"]
    assert api.decide("+14155550999", callee="+13125550100") == "block"
    assert api.decide("+14155550999", callee="+13125550199") == "connect"
    assert (await api.delete("/api/v1/lists", {"pattern": "+1415555*", "did": "+13125550199"}))[0] == 404
    assert (await api.delete("/api/v1/lists", {"pattern": "+1415555*", "did": "+13125550100"}))[0] == 200


async def test_write_actions_are_audited_with_the_token_name_never_the_token(api: Api) -> None:
    await api.post("/api/v1/lists", {"action": "deny", "pattern": "+14155550123"})
    await api.post("/api/v1/lists", {"action": "deny", "pattern": "+1415abc*"})
    await api.delete("/api/v1/lists", {"pattern": "+19995550000"})
    await api.post("/api/v1/reports", {"number": "+17185550123", "note": "IRS scam"})
    status, data = await api.get("/api/v1/admin-actions")
    assert status == 200
    summary = [(a["actor"], a["action"], a["target"], a["status"]) for a in reversed(data["actions"])]
    assert summary == [
        ("alice", "lists.add", "+14155550123", 201),
        ("alice", "lists.add", "+1415abc*", 400),
        ("alice", "lists.remove", "+19995550000", 404),
        ("alice", "reports.add", "+17185550123", 201),
    ]
    rows = api.fw.connection.execute("SELECT actor, detail, result FROM admin_actions").fetchall()
    assert len(rows) == 4 and all(api.token not in str(row) for row in rows)


async def test_reports_are_evidence_and_explain_shows_them(api: Api) -> None:
    status, data = await api.post("/api/v1/reports", {"number": "+17185550123", "note": "IRS scam", "admin": True})
    assert (status, data["number"], data["mesh_seq"]) == (201, "+17185550123", None)
    assert (await api.post("/api/v1/reports", {"number": "anonymous"}))[1]["field"] == "number"
    api.fw.flush()
    status, explained = await api.get("/api/v1/explain/+17185550123")
    assert status == 200
    assert explained["reputation"]["reports"] > 0
    assert [(e["kind"], e["source"], e["note"]) for e in explained["evidence"]] == [
        ("admin_report", "api:alice", "IRS scam")
    ]


async def test_unlist_and_report_are_shared_on_the_mesh_like_the_cli(mesh_api: Api) -> None:
    await mesh_api.post("/api/v1/lists", {"action": "deny", "pattern": "+14155550123"})
    status, removed = await mesh_api.delete("/api/v1/lists", {"pattern": "+14155550123"})
    assert status == 200 and removed["mesh_seq"] == 1
    status, reported = await mesh_api.post("/api/v1/reports", {"number": "+17185550123"})
    assert reported["mesh_seq"] == 2
    await mesh_api.post("/api/v1/lists", {"action": "deny", "pattern": "+1415555*"})
    assert (await mesh_api.delete("/api/v1/lists", {"pattern": "+1415555*"}))[1]["mesh_seq"] is None  # not a number
    box = Outbox.open(mesh_api.ctx.database)  # the mesh's own file beside the node database
    waiting = box.pending()
    box.connection.close()
    kinds = [(decode_payload(row.payload).kind.value, decode_payload(row.payload).subject) for row in waiting]
    assert kinds == [("revoke", "+14155550123"), ("report", "+17185550123")]
    assert [row.topic for row in waiting] == ["callshield/v1/acme/verdicts/pbx-a"] * 2


# --- reads ---------------------------------------------------------------------------------------


async def test_decisions_filter_by_number_action_limit_and_since(api: Api) -> None:
    for caller in ("+12125550111", "+12125550112", "+17735550123", "+12125550111"):
        api.decide(caller)
    api.fw.flush()
    status, data = await api.get("/api/v1/decisions")
    assert status == 200 and [d["caller"] for d in data["decisions"]] == [
        "+12125550111",
        "+17735550123",
        "+12125550112",
        "+12125550111",
    ]
    first = data["decisions"][0]
    assert first["action"] == "block" and first["reason"] == "denylist:prefix"
    assert first["reasons"][0]["code"] == "denylist:prefix" and "+1212555*" in first["reasons"][0]["detail"]
    blocks = (await api.get("/api/v1/decisions", action="block"))[1]["decisions"]
    assert {d["caller"] for d in blocks} == {"+12125550111", "+12125550112"} and len(blocks) == 3
    mine = (await api.get("/api/v1/decisions", number="2125550111"))[1]
    assert mine["number"] == "+12125550111" and len(mine["decisions"]) == 2
    plain = (await api.get("/api/v1/decisions", number="+17735550123"))[1]["decisions"]
    assert plain == []  # a plain connect is not indexed by caller: found only with since
    with_since = (await api.get("/api/v1/decisions", number="+17735550123", since="1h"))[1]["decisions"]
    assert [d["action"] for d in with_since] == ["connect"]
    assert len((await api.get("/api/v1/decisions", limit="1"))[1]["decisions"]) == 1
    one = await api.get(f"/api/v1/decisions/{first['id']}")
    assert one == (200, first)


async def test_explain_is_the_cli_explanation(api: Api) -> None:
    from callshield.explain import explain

    api.decide("+12125550111")
    api.fw.flush()
    status, data = await api.get("/api/v1/explain/+12125550111", did="+13125550100")
    expected = explain(api.fw, "+12125550111", callee="+13125550100")
    assert status == 200
    assert data["now"]["action"] == expected["now"]["action"] == "block"
    assert data["rules"] == expected["rules"] and data["decisions"] == expected["decisions"]
    assert data["decisions"][0]["reasons"][0].startswith("denylist:prefix")


async def test_stats_live_mesh_and_config(api: Api) -> None:
    for caller in ("+12125550111", "+12125550111", "+12125550142", "+17735550123"):
        api.decide(caller)
    api.fw.flush()
    status, stats = await api.get("/api/v1/stats", since="1h")
    assert status == 200 and stats["decisions"] == {"block": 3, "connect": 1}
    assert stats["top_blocked"] == [{"caller": "+12125550111", "blocks": 2}, {"caller": "+12125550142", "blocks": 1}]
    assert stats["top_ranges"] == [{"prefix": "+1212555*", "blocks": 3, "callers": 2}]
    live = (await api.get("/api/v1/live"))[1]
    assert live["decisions"] == {"connect": 1, "screen": 0, "block": 3}
    mesh = (await api.get("/api/v1/mesh"))[1]
    assert mesh["enabled"] is False and mesh["outbox"] == 0
    config = (await api.get("/api/v1/config"))[1]
    assert config["rules"] == 1 and config["file"] == {
        "path": str(api.tmp / "cs.toml"),
        "valid": True,
        "error": None,
        "same_as_running": True,
    }
    (api.tmp / "cs.toml").write_text("[policy]\nscreen_at = 'x'\n")
    broken = (await api.get("/api/v1/config"))[1]["file"]
    assert broken["valid"] is False and "screen_at" in broken["error"]


async def test_token_reload_takes_new_tokens_and_keeps_old_ones_on_a_bad_file(api: Api) -> None:
    second = new_token(api.ctx.token_path, name="bob")
    api.ctx.reload_tokens()
    assert (await api.client.get("/api/v1/live", headers=api.headers(second))).status == 200
    api.ctx.token_path.chmod(0o644)
    api.ctx.reload_tokens()  # refused: world-readable; the running tokens stay
    assert (await api.client.get("/api/v1/live", headers=api.headers(second))).status == 200


# --- the OpenAPI document ------------------------------------------------------------------------


async def test_openapi_documents_exactly_the_routes(api: Api) -> None:
    status, doc = await api.get("/api/v1/openapi.json")
    assert status == 200 and doc == document() and doc["openapi"].startswith("3.1")
    served = {
        (route.method, route.resource.canonical)
        for route in api.client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert served == documented == {(m, p) for m, p, _ in ROUTES}
    for path, item in doc["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
            assert "200" in operation["responses"] or "201" in operation["responses"]
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', msgspec.json.encode(doc).decode().replace(":", ": "))
    for section, name in refs:
        assert name in doc["components"][section], name
