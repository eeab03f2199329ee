"""A FastAPI service on AWS Lambda: the routes are in main.py."""
