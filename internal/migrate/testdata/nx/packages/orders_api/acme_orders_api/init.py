"""The orders service's FastAPI application object."""

from fastapi import FastAPI

app = FastAPI(title="OrdersApi", generate_unique_id_function=lambda route: route.name)
