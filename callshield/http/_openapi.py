"""The OpenAPI 3.1 document of ``/api/v1/`` (served at ``/api/v1/openapi.json``).

Written by hand next to the handlers; a test checks that it lists exactly the routes of
``_api.ROUTES`` with the same path parameters.
"""

from __future__ import annotations

from typing import Any

from callshield.verdict import Action

VERSION = "1.0.0"


def _query(name: str, description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _ok(description: str, schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {
        status: {"description": description, "content": {"application/json": {"schema": schema}}},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
    }


def _body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_OBJECT: dict[str, Any] = {"type": "object"}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}
_DURATION = {"type": "string", "examples": ["90m", "24h", "7d", "3600"]}
_ACTIONS = [a.value for a in Action]

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {
            "error": {"type": "string"},
            "status": {"type": "integer"},
            "field": {"type": "string", "description": "The request field (body key or parameter) at fault"},
        },
    },
    "Reason": {
        "type": "object",
        "properties": {"code": {"type": "string"}, "points": {"type": "number"}, "detail": {"type": "string"}},
    },
    "Decision": {
        "type": "object",
        "required": ["id", "ts", "caller", "callee", "action", "decided", "score", "reason", "reasons", "mode"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{20}$"},
            "ts": {"type": "number", "description": "Unix time of the decision"},
            "caller": {"type": "string", "description": "E.164, or a caller kind such as anonymous"},
            "callee": {"type": "string"},
            "action": {"enum": _ACTIONS, "description": "What was done (after a screening challenge, its result)"},
            "decided": {"enum": _ACTIONS, "description": "What the policy decided (differs in shadow mode)"},
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "reason": {"type": "string"},
            "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
            "mode": {"enum": ["enforce", "shadow"]},
            "outcome": {"type": ["object", "null"]},
            "screen": {"type": ["string", "null"]},
        },
    },
    "ListEntry": {
        "type": "object",
        "properties": {
            "source": {"type": "string", "description": "list:ID (managed entries) or config:rules[N]"},
            "action": {"enum": ["allow", "deny"]},
            "pattern": {"type": "string"},
            "dids": {"type": "array", "items": {"type": "string"}},
            "tenants": {"type": "array", "items": {"type": "string"}},
            "expires": {"type": ["string", "null"], "format": "date-time"},
            "note": {"type": "string"},
        },
    },
    "NewListEntry": {
        "type": "object",
        "additionalProperties": False,
        "required": ["action", "pattern"],
        "properties": {
            "action": {"enum": ["allow", "deny"]},
            "pattern": {
                "type": "string",
                "description": "+14155550123 (exact), +1415555* (prefix), +1415555??[0-4]*, a caller kind "
                "(anonymous, withheld, ...), or a national number (normalized with node.default_region)",
            },
            "dids": {"type": "array", "items": {"type": "string"}, "description": "Only for calls to these DIDs"},
            "tenants": {"type": "array", "items": {"type": "string"}, "description": "Only for these tenants"},
            "ttl": {
                "type": ["string", "number", "null"],
                "description": "Expire after this long: seconds, or 90m, 24h, 30d",
            },
            "note": {"type": "string", "maxLength": 500},
        },
    },
    "NewReport": {
        "type": "object",
        "additionalProperties": False,
        "required": ["number"],
        "properties": {
            "number": {"type": "string"},
            "note": {"type": "string", "maxLength": 500},
            "admin": {"type": "boolean", "default": False, "description": "An administrator's report weighs 3"},
        },
    },
}

_PATHS: dict[str, Any] = {
    "/api/v1/decisions": {
        "get": {
            "operationId": "listDecisions",
            "summary": "Recent decisions from the audit log, newest first",
            "description": "With number and no since: that caller's notable decisions (blocks, screens, "
            "risky connects); with since, every decision of the period.",
            "parameters": [
                _query("number", "Only this caller (national numbers are normalized)", {"type": "string"}),
                _query("action", "Only this action", {"enum": _ACTIONS}),
                _query("limit", "At most this many", _LIMIT),
                _query("since", "Only the last period (a duration)", _DURATION),
            ],
            "responses": _ok(
                "Decisions",
                {
                    "type": "object",
                    "properties": {
                        "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}},
                        "number": {"type": ["string", "null"]},
                    },
                },
            ),
        }
    },
    "/api/v1/decisions/{id}": {
        "get": {
            "operationId": "getDecision",
            "summary": "One decision by its id (CALLSHIELD_ID)",
            "parameters": [_path("id", "Decision id", {"type": "string", "pattern": "^[0-9a-f]{20}$"})],
            "responses": {
                **_ok("The decision", {"$ref": "#/components/schemas/Decision"}),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        }
    },
    "/api/v1/explain/{number}": {
        "get": {
            "operationId": "explainNumber",
            "summary": "Everything known about a number and why (as callshield explain --json)",
            "parameters": [
                _path("number", "The caller: E.164 (URL-encode the +), national, or a kind", {"type": "string"}),
                _query("did", "Explain a call to this DID", {"type": "string"}),
                _query("limit", "History entries", {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}),
                _query("all", "Also plain connects of the last DAYS days", {"type": "number", "maximum": 366}),
            ],
            "responses": _ok("The explanation", _OBJECT),
        }
    },
    "/api/v1/lists": {
        "get": {
            "operationId": "getLists",
            "summary": "Allow/deny rules in force (managed entries and the config file's rules)",
            "responses": _ok(
                "Rules",
                {
                    "type": "object",
                    "properties": {"entries": {"type": "array", "items": {"$ref": "#/components/schemas/ListEntry"}}},
                },
            ),
        },
        "post": {
            "operationId": "addListEntry",
            "summary": "Add an allow or deny entry (as callshield allow/deny); in force for the next call",
            "requestBody": _body("NewListEntry"),
            "responses": {
                **_ok("The entry", {"$ref": "#/components/schemas/ListEntry"}, "201"),
                "413": {"$ref": "#/components/responses/TooLarge"},
                "415": {"$ref": "#/components/responses/BadRequest"},
            },
        },
        "delete": {
            "operationId": "removeListEntries",
            "summary": "Remove the entries for a pattern (as callshield unlist); an exact number is revoked on "
            "the mesh",
            "parameters": [
                _query("pattern", "The entries' pattern", {"type": "string"}, required=True),
                _query(
                    "did",
                    "Only the entry with exactly this DID scope (repeatable)",
                    {"type": "array", "items": {"type": "string"}},
                ),
                _query("action", "Only allow or only deny entries", {"enum": ["allow", "deny"]}),
            ],
            "responses": {
                **_ok(
                    "Removed",
                    {
                        "type": "object",
                        "properties": {
                            "removed": {"type": "integer"},
                            "pattern": {"type": "string"},
                            "mesh_seq": {"type": ["integer", "null"]},
                        },
                    },
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        },
    },
    "/api/v1/reports": {
        "post": {
            "operationId": "addReport",
            "summary": "Report a number as spam (as callshield report); shared on the mesh when it is on",
            "requestBody": _body("NewReport"),
            "responses": {
                **_ok(
                    "Recorded",
                    {
                        "type": "object",
                        "properties": {
                            "number": {"type": "string"},
                            "admin": {"type": "boolean"},
                            "mesh_seq": {"type": ["integer", "null"]},
                        },
                    },
                    "201",
                ),
                "413": {"$ref": "#/components/responses/TooLarge"},
                "415": {"$ref": "#/components/responses/BadRequest"},
            },
        }
    },
    "/api/v1/stats": {
        "get": {
            "operationId": "getStats",
            "summary": "Decisions by action and reason (as callshield stats), top blocked callers and ranges",
            "parameters": [
                _query("since", "Period", {**_DURATION, "default": "24h"}),
                _query("top", "Length of the top lists", {"type": "integer", "minimum": 0, "maximum": 100}),
            ],
            "responses": _ok("Statistics", _OBJECT),
        }
    },
    "/api/v1/live": {
        "get": {
            "operationId": "getLive",
            "summary": "Decisions by action since this process started (poll it for rates)",
            "responses": _ok("Counters", _OBJECT),
        }
    },
    "/api/v1/mesh": {
        "get": {
            "operationId": "getMesh",
            "summary": "Mesh status (as callshield mesh status --json): peers, lag, messages, outbox",
            "responses": _ok("Mesh status", _OBJECT),
        }
    },
    "/api/v1/config": {
        "get": {
            "operationId": "getConfig",
            "summary": "The running configuration's summary and warnings; whether the file would reload",
            "responses": _ok("Configuration check", _OBJECT),
        }
    },
    "/api/v1/admin-actions": {
        "get": {
            "operationId": "getAdminActions",
            "summary": "The audit trail of write actions: who (token name or hash), what, when, result",
            "parameters": [
                _query("limit", "At most this many", _LIMIT),
                _query("actor", "Only this token", {"type": "string"}),
            ],
            "responses": _ok("Actions", _OBJECT),
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "responses": _ok("OpenAPI 3.1", _OBJECT),
        }
    },
}


def _error_response(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callshield admin API",
            "version": VERSION,
            "description": "Decisions, explanations, allow/deny lists, reports, statistics and mesh status of "
            "a callshield node. Every call needs Authorization: Bearer TOKEN (callshield token new).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
            "responses": {
                "BadRequest": _error_response("Invalid request; field names the culprit"),
                "Unauthorized": _error_response("Missing or unknown bearer token"),
                "NotFound": _error_response("No such object"),
                "TooLarge": _error_response("Request body too large (http.max_body)"),
            },
        },
    }
