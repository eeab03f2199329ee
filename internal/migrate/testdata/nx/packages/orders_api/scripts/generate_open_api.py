"""Writes the service's OpenAPI document to the path given."""

import json
import os
import sys

from acme_orders_api.main import app

os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
with open(sys.argv[1], "w") as f:
    json.dump(app.openapi(), f)
