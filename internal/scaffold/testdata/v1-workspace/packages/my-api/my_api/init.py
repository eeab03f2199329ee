"""The app, and what every route of it shares.

main.py declares the routes on `app`. This module gives them Powertools
logging, metrics and tracing, CORS, correlation ids, a safe answer to
unhandled errors, and JSON Lines streaming.
"""

import json
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool

SERVICE_NAME = "my-api"

# Powertools reads its settings from the environment; the Lambda function's
# environment wins over these defaults.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", SERVICE_NAME)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", SERVICE_NAME)

logger = Logger()
metrics = Metrics()
tracer = Tracer()

CORRELATION_ID_HEADER = "x-correlation-id"
# The AWS Lambda Web Adapter forwards the invocation's context (its
# request_id among it) and X-Ray trace header as these request headers.
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"
TRACE_HEADER = "x-amzn-trace-id"

# Browsers on the developer's machine may always call the API; other
# origins come from ALLOWED_ORIGINS (comma-separated, or "*").
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1)(:\d+)?"


class InternalServerError(BaseModel):
    detail: str


class LoggedRoute(APIRoute):
    """Adds the request's path, route and method to every log record."""

    def get_route_handler(self) -> Callable:
        handle = super().get_route_handler()
        route = self.path

        async def logged(request: Request) -> Response:
            logger.append_keys(
                path=request.url.path, route=route, method=request.method
            )
            # The subsegment itself is not used: outside a traced Lambda
            # invocation there is none, and the block is then a no-op.
            name = f"## {request.method} {route}"
            async with tracer.provider.in_subsegment_async(name):
                return await handle(request)

        return logged


app = FastAPI(
    title=SERVICE_NAME,
    # Operation ids are the route functions' names, so the operation names
    # CDK code uses (metadata.gen.ts) do not change when a path does.
    generate_unique_id_function=lambda route: route.name,
    responses={
        500: {"model": InternalServerError, "description": "Internal error"}
    },
)
# Set before main.py declares its routes, so that every route is logged.
app.router.route_class = LoggedRoute


@app.exception_handler(Exception)
async def unhandled_exception(request: Request, err: Exception) -> Response:
    """Logs the stack trace and answers a 500 that reveals nothing."""
    logger.exception("Unhandled exception")
    metrics.add_metric(name="Failure", unit=MetricUnit.Count, value=1)
    return JSONResponse(
        status_code=500, content={"detail": "Internal Server Error"}
    )


@app.middleware("http")
async def record_metrics(request: Request, call_next: Callable) -> Response:
    """Counts requests per route and successes, and flushes the metrics."""
    metrics.add_metric(name="RequestCount", unit=MetricUnit.Count, value=1)
    try:
        try:
            response = await call_next(request)
        except Exception as err:
            # Handled here rather than by Starlette's outermost middleware,
            # so the 500 still carries CORS headers and the correlation id.
            response = await unhandled_exception(request, err)
        route = request.scope.get("route")
        if isinstance(route, APIRoute):
            metrics.add_dimension(
                name="route", value=f"{request.method} {route.path}"
            )
        if response.status_code < 400:
            metrics.add_metric(name="Success", unit=MetricUnit.Count, value=1)
        return response
    finally:
        # Under the Web Adapter no Lambda handler decorator flushes them.
        metrics.flush_metrics()


@app.middleware("http")
async def correlate(request: Request, call_next: Callable) -> Response:
    """Gives every request a correlation id and echoes it in the response.

    The id is the caller's x-correlation-id, else the Lambda request id,
    else a new uuid.
    """
    correlation_id = (
        request.headers.get(CORRELATION_ID_HEADER)
        or _lambda_request_id(request)
        or str(uuid.uuid4())
    )
    trace = request.headers.get(TRACE_HEADER)
    if trace:
        # The X-Ray SDK finds the invocation's trace in this variable.
        os.environ["_X_AMZN_TRACE_ID"] = trace
    logger.remove_keys(["path", "route", "method"])
    logger.set_correlation_id(correlation_id)
    response = await call_next(request)
    response.headers[CORRELATION_ID_HEADER] = correlation_id
    return response


def _lambda_request_id(request: Request) -> str | None:
    raw = request.headers.get(LAMBDA_CONTEXT_HEADER)
    if not raw:
        return None
    try:
        context = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(context, dict):
        return None
    request_id = context.get("request_id")
    return request_id if isinstance(request_id, str) else None


_origins = os.environ.get("ALLOWED_ORIGINS", "")
app.add_middleware(
    CORSMiddleware,
    allow_origins=[o.strip() for o in _origins.split(",") if o.strip()],
    allow_origin_regex=LOCALHOST_ORIGINS,
    allow_methods=["*"],
    allow_headers=["*"],
    expose_headers=[CORRELATION_ID_HEADER],
)


class JsonStreamingResponse(StreamingResponse):
    """Streams pydantic models as JSON Lines: one model per line.

    Declare the route with response_class=JsonStreamingResponse and
    responses=openapi_response(Model, "...") so the OpenAPI spec names the
    model of each line and marks the operation as streaming.
    """

    media_type = "application/jsonl"

    def __init__(
        self,
        content: Iterable[BaseModel] | AsyncIterable[BaseModel],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(
            _json_lines(content),
            status_code=status_code,
            headers=headers,
            media_type=self.media_type,
            background=background,
        )


async def _json_lines(
    items: Iterable[BaseModel] | AsyncIterable[BaseModel],
) -> AsyncIterator[str]:
    if not isinstance(items, AsyncIterable):
        # A plain iterable may block; it runs in a worker thread.
        items = iterate_in_threadpool(iter(items))
    async for item in items:
        yield _to_json(item) + "\n"


def _to_json(item: BaseModel) -> str:
    # pydantic 2 names it model_dump_json; pydantic 1 json.
    dump = getattr(item, "model_dump_json", None) or item.json
    return dump()


def openapi_response(
    model: type[BaseModel], description: str
) -> dict[int | str, dict[str, Any]]:
    """The responses= of a JsonStreamingResponse route: each line's model."""
    return {200: {"model": model, "description": description}}
