"""The example service: what a py#fast-api project looks like under pipe."""

import json
from typing import Iterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI(title="my-api")


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}", tags=["items"])
def get_item(item_id: int) -> dict:
    return {"item_id": item_id, "name": f"item {item_id}"}


@app.post("/items", tags=["items"])
def create_item(item: Item) -> dict:
    return {"name": item.name, "price": item.price}


@app.get("/items", tags=["items"], operation_id="list")
def list_items() -> list:
    return []


@app.get("/users", tags=["users"], operation_id="list_")
def list_users() -> list:
    return []


def _ticks() -> Iterator[str]:
    for i in range(3):
        yield json.dumps({"tick": i}) + "\n"


@app.get(
    "/events",
    tags=["events"],
    responses={200: {"content": {"application/jsonl": {}}}},
    openapi_extra={"x-streaming": True},
)
def stream_events():
    return StreamingResponse(_ticks(), media_type="application/jsonl")
