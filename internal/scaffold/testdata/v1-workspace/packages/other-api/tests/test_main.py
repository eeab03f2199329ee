"""Tests of the app: `pipe test` runs them (or `uv run pytest` here)."""

import json
import uuid

from fastapi.testclient import TestClient

from other_api.init import app
from other_api.main import Chunk

client = TestClient(app)


def test_echo():
    response = client.get("/echo", params={"message": "hello"})
    assert response.status_code == 200
    assert response.json() == {"message": "hello"}


def test_stream_returns_json_lines():
    response = client.get("/stream", params={"message": "hi", "count": 2})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == [
        {"index": 0, "message": "hi"},
        {"index": 1, "message": "hi"},
    ]


def test_stream_declares_its_item_schema():
    operation = app.openapi()["paths"]["/stream"]["get"]
    content = operation["responses"]["200"]["content"]
    assert "application/jsonl" in content
    schema = content["application/jsonl"]["schema"]
    assert schema["$ref"].endswith("/" + Chunk.__name__)


def test_operation_ids_are_function_names():
    paths = app.openapi()["paths"]
    assert paths["/echo"]["get"]["operationId"] == "echo"
    assert paths["/stream"]["get"]["operationId"] == "stream"


def test_correlation_id_is_echoed():
    response = client.get(
        "/echo",
        params={"message": "hi"},
        headers={"x-correlation-id": "abc-123"},
    )
    assert response.headers["x-correlation-id"] == "abc-123"


def test_correlation_id_defaults_to_the_lambda_request_id():
    context = json.dumps({"request_id": "lambda-request-1"})
    response = client.get(
        "/echo",
        params={"message": "hi"},
        headers={"x-amzn-lambda-context": context},
    )
    assert response.headers["x-correlation-id"] == "lambda-request-1"


def test_correlation_id_is_generated():
    response = client.get("/echo", params={"message": "hi"})
    uuid.UUID(response.headers["x-correlation-id"])


def test_localhost_is_an_allowed_origin():
    origin = "http://localhost:3000"
    response = client.get(
        "/echo", params={"message": "hi"}, headers={"origin": origin}
    )
    assert response.headers["access-control-allow-origin"] == origin


def test_unhandled_error_answers_a_safe_500():
    def explode():
        raise RuntimeError("a secret detail")

    app.add_api_route("/tests/explode", explode)
    response = client.get("/tests/explode")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}
    assert "secret" not in response.text
    assert response.headers["x-correlation-id"]
