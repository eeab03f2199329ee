"""Routes of the orders service."""

from pydantic import BaseModel

from .init import app


class Order(BaseModel):
    id: str
    total: float


@app.get("/orders/{order_id}")
def get_order(order_id: str) -> Order:
    return Order(id=order_id, total=0.0)


@app.post("/orders")
def place_order(order: Order) -> Order:
    return order
