"""The my-api routes.

Each function's name is its operation id, and so the operation's name in
the CDK constructs (metadata.gen.ts): renaming a function renames the
operation there too.
"""

from collections.abc import AsyncIterator

from pydantic import BaseModel

from .init import JsonStreamingResponse, app, logger, openapi_response


class EchoOutput(BaseModel):
    message: str


class Chunk(BaseModel):
    index: int
    message: str


@app.get("/echo")
def echo(message: str) -> EchoOutput:
    """Answers with the message it was given."""
    return EchoOutput(message=message)


@app.get(
    "/stream",
    response_class=JsonStreamingResponse,
    responses=openapi_response(Chunk, "The message, one chunk per line"),
)
def stream(message: str, count: int = 3) -> JsonStreamingResponse:
    """Streams the message back, count times, as JSON Lines."""

    async def chunks() -> AsyncIterator[Chunk]:
        for index in range(count):
            yield Chunk(index=index, message=message)

    logger.info("Streaming", extra={"count": count})
    return JsonStreamingResponse(chunks())
