"""Property-based conformance of the admin API to its own OpenAPI document (schemathesis), against a
real `callshield serve --http` process: no request generated from the document gets a server error,
an undocumented status, a non-JSON body, or a body that does not match the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from callshield.http import openapi_document  # noqa: E402
from tests.integration.test_serve_http import HttpServer  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    srv = HttpServer(Path(tmp_path_factory.mktemp("schemathesis")))
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()
    log = srv.log.read_text()
    assert "Traceback" not in log, log  # nothing the generated requests did was a bug on the server


OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(openapi_document()).get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_api_conforms_to_its_openapi_document(operation: Any, http_server: HttpServer) -> None:
    # Driven with hypothesis directly: schemathesis' own pytest plugin does not run under this pytest.
    headers = {"Authorization": f"Bearer {http_server.token}"}

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def conforms(case: Any) -> None:
        case.call_and_validate(base_url=http_server.url, headers=headers, checks=CHECKS)

    conforms()
