"""Response classes that serialise with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response


class OrjsonResponse(Response):
    """``application/json`` rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class FhirJsonResponse(OrjsonResponse):
    """``application/fhir+json`` rendered with orjson (https://hl7.org/fhir/R4/json.html)."""

    media_type = "application/fhir+json"
