#!/bin/bash
# Started by the Lambda Web Adapter: serve the app on $PORT.
PATH=$PATH:$LAMBDA_TASK_ROOT/bin \
    PYTHONPATH=$PYTHONPATH:/opt/python:$LAMBDA_RUNTIME_DIR \
    exec python -m uvicorn --port=$PORT acme_orders_api.main:app
