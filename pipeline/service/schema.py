"""The service's OpenAPI schema, as checked in at ``docs/openapi.json``.

Regenerate after changing the API: ``python -m pipeline.service.schema > docs/openapi.json``.
"""
from __future__ import annotations

import json
from typing import Any

from pipeline.service.app import create_app
from pipeline.service.config import PathPolicy


def openapi_schema() -> dict[str, Any]:
    """The schema of the routes (built without a journal or workers: only the routes are read)."""
    return create_app(None, None, None, PathPolicy(()), token="-").openapi()  # type: ignore[arg-type]


if __name__ == "__main__":
    print(json.dumps(openapi_schema(), indent=2, sort_keys=True))
