#!/bin/sh
# Started by the AWS Lambda Web Adapter; the bundle root is the import root.
cd "$(dirname "$0")" || exit 1
exec python -m uvicorn my_api.main:app --host 0.0.0.0 --port ${PORT:-8000}
