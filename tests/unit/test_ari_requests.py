"""Every REST request the ARI client can make, checked against Asterisk's ARI Swagger specs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from callshield.ari import AriRequest
from callshield.ari import _requests as requests
from tests.conftest import need_shared

# One example of every builder in callshield.ari._requests (the test below fails when one is missing).
EXAMPLES: dict[str, AriRequest] = {
    "set_variable": requests.set_variable("1795845352.0", "CALLSHIELD_ACTION", "block"),
    "get_variable": requests.get_variable("1795845352.0", "CALLERID(pres)"),
    "continue_in_dialplan": requests.continue_in_dialplan("1795845352.0"),
    "hangup": requests.hangup("1795845352.0", 21),
    "answer": requests.answer("1795845352.0"),
    "play": requests.play("1795845352.0", "callshield-1a2b3c4d-1", "sound:digits/7"),
    "stop_playback": requests.stop_playback("callshield-1a2b3c4d-1"),
}


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> Swagger operation, from every api-docs/*.json."""
    folder: Path = need_shared("ari", "api-docs")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for spec_file in sorted(folder.glob("*.json")):
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        for api in spec.get("apis", []):
            for operation in api.get("operations", []):
                found[(operation["httpMethod"], api["path"])] = operation
    return found


def test_every_builder_has_an_example() -> None:
    assert set(EXAMPLES) == {name for name in requests.__all__ if name != "AriRequest"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_request_matches_the_ari_spec(name: str) -> None:
    request = EXAMPLES[name]
    operations = _operations()
    assert len(operations) > 50  # the specs were found and read
    operation = operations.get((request.method, request.template))
    assert operation is not None, f"{request.method} {request.template} is not an ARI operation"
    params = {p["name"]: p for p in operation.get("parameters", [])}
    placeholders = set(re.findall(r"\{(\w+)\}", request.template))
    assert {n for n, _ in request.path_params} == placeholders
    assert placeholders == {n for n, p in params.items() if p["paramType"] == "path"}
    query_names = [n for n, _ in request.query]
    assert len(query_names) == len(set(query_names))
    for param_name, value in request.query:
        spec = params.get(param_name)
        assert spec is not None, f"{param_name} is not a parameter of {operation['nickname']}"
        assert spec["paramType"] == "query"
        allowed = spec.get("allowableValues", {})
        if allowed.get("valueType") == "LIST":
            assert value in allowed["values"]
        if spec["dataType"] in ("int", "long"):
            assert re.fullmatch(r"-?[0-9]+", value)
        if spec["dataType"] == "boolean":
            assert value in ("true", "false")
    required = {n for n, p in params.items() if p.get("required") and p["paramType"] == "query"}
    assert required <= set(query_names), f"missing required {required - set(query_names)}"
    assert not any(p["paramType"] == "body" and p.get("required") for p in params.values())


def test_hangup_reason_code_is_a_cause_number() -> None:
    request = requests.hangup("c1", 17)
    assert (request.method, request.path, request.query) == ("DELETE", "/channels/c1", (("reason_code", "17"),))


def test_path_parameters_are_one_encoded_segment() -> None:
    assert requests.continue_in_dialplan("a/b?c").path == "/channels/a%2Fb%3Fc/continue"
    assert requests.stop_playback("p 1").path == "/playbacks/p%201"
