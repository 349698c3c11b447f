"""Cross-check: ``validate`` agrees with the official R4 JSON schema.

The schema in /work/shared/fhir-r4 is the Medplum-shipped copy; it references two
definitions it does not define (``Resource`` and ``integer64``, used only by Medplum's own
types), which are filled in here. ``ResourceList`` is made permissive so that compiling one
resource type does not compile all of them (nested resources are covered by ``validate``'s
own tests).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from sharedcare.fhir.validation import validate
from sharedcare.fhir.xml_format import xml_to_json

SCHEMA = Path("/work/shared/fhir-r4/fhir.schema.json")
EXAMPLES = Path("/work/shared/conformance/uk-core/examples")
TYPES = ("Patient", "Observation", "Encounter")

pytestmark = pytest.mark.skipif(
    not (SCHEMA.is_file() and EXAMPLES.is_dir()), reason="shared R4 files not present"
)


@cache
def _definitions() -> dict[str, Any]:
    defs: dict[str, Any] = json.loads(SCHEMA.read_text())["definitions"]
    defs["Resource"] = defs["ResourceList"] = {"type": "object"}
    defs["integer64"] = {"type": "string"}
    return defs


@cache
def _schema_validator(rtype: str) -> Callable[[Any], Any]:
    schema = {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "$ref": f"#/definitions/{rtype}",
        "definitions": _definitions(),
    }
    fn: Callable[[Any], Any] = fastjsonschema.compile(schema)
    return fn


def _schema_ok(resource: dict[str, Any]) -> bool:
    try:
        _schema_validator(resource["resourceType"])(resource)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _examples() -> list[dict[str, Any]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.xml")):
        resource = xml_to_json(path.read_bytes())
        if resource["resourceType"] in TYPES:
            out.append(resource)
    return out


MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("unknown element", lambda r: r.__setitem__("colour", "blue")),
    ("id with spaces", lambda r: r.__setitem__("id", "not valid")),
    ("empty id", lambda r: r.__setitem__("id", "")),
    ("status outside its required value set", lambda r: r.__setitem__("status", "nonsense")),
    ("implicitRules with space", lambda r: r.__setitem__("implicitRules", "a b")),
    ("bad instant", lambda r: r.__setitem__("meta", {"lastUpdated": "2020-01-01"})),
    ("identifier not array", lambda r: r.__setitem__("identifier", {"value": "1"})),
    ("identifier value number", lambda r: r.__setitem__("identifier", [{"value": 1}])),
    ("extension url with space", lambda r: r.__setitem__("extension", [{"url": "a b"}])),
    ("language with space", lambda r: r.__setitem__("language", "en GB ")),
    ("contained not an array", lambda r: r.__setitem__("contained", {"resourceType": "Basic"})),
]


def test_schema_and_validate_accept_the_same_examples() -> None:
    examples = _examples()
    assert len(examples) > 50
    for resource in examples:
        assert _schema_ok(resource) == (validate(resource) == []), resource.get("id")


@pytest.mark.parametrize(("name", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_what_the_schema_rejects_validate_rejects(
    name: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    rejected = 0
    for resource in _examples()[::10]:
        broken = copy.deepcopy(resource)
        mutate(broken)
        if not _schema_ok(broken):
            rejected += 1
            assert validate(broken), (name, resource.get("id"))
    assert rejected, f"the schema accepted every '{name}' mutation; pick a stronger one"
