"""The AuditEvent entry of a request refused before the record's gate: which interaction its
method and path ask for, and which parts of the path it keeps (``api.refusal_audit``)."""

from __future__ import annotations

import pytest

from sharedcare.api.refusal_audit import refused_entry, validation_reason

# method, path, interaction, resource type, id, version, patient
CASES = [
    ("GET", "/fhir", "search-system", None, None, None, None),
    ("POST", "/fhir", "batch", None, None, None, None),
    ("POST", "/fhir/", "batch", None, None, None, None),
    ("GET", "/fhir/metadata", "capabilities", None, None, None, None),
    ("GET", "/fhir/_history", "history-system", None, None, None, None),
    ("POST", "/fhir/_search", "search-system", None, None, None, None),
    ("GET", "/fhir/Observation", "search-type", "Observation", None, None, None),
    ("POST", "/fhir/Observation/_search", "search-type", "Observation", None, None, None),
    ("POST", "/fhir/Observation", "create", "Observation", None, None, None),
    ("PUT", "/fhir/Observation", "update", "Observation", None, None, None),
    ("DELETE", "/fhir/Observation", "delete", "Observation", None, None, None),
    ("GET", "/fhir/Observation/_history", "history-type", "Observation", None, None, None),
    ("GET", "/fhir/Observation/o-1", "read", "Observation", "o-1", None, None),
    ("HEAD", "/fhir/Observation/o-1", "read", "Observation", "o-1", None, None),
    ("PUT", "/fhir/Observation/o-1", "update", "Observation", "o-1", None, None),
    ("PATCH", "/fhir/Observation/o-1", "patch", "Observation", "o-1", None, None),
    ("DELETE", "/fhir/Observation/o-1", "delete", "Observation", "o-1", None, None),
    ("OPTIONS", "/fhir/Observation/o-1", "operation", "Observation", "o-1", None, None),
    ("GET", "/fhir/Observation/o-1/_history", "history-instance", "Observation", "o-1", None, None),
    ("GET", "/fhir/Observation/o-1/_history/3", "vread", "Observation", "o-1", 3, None),
    ("GET", "/fhir/Observation/o-1/_history/x", "vread", "Observation", "o-1", None, None),
    ("GET", "/fhir/Patient/p1", "read", "Patient", "p1", None, "Patient/p1"),
    (
        "GET",
        "/fhir/Patient/p1/Observation",
        "search-compartment",
        "Observation",
        None,
        None,
        "Patient/p1",
    ),
    ("GET", "/fhir/Patient/p1/Nonsense", "search-compartment", None, None, None, "Patient/p1"),
    ("GET", "/fhir/Patient/p1/$everything", "operation", "Patient", "p1", None, "Patient/p1"),
    ("POST", "/fhir/Patient/$validate", "operation", "Patient", None, None, None),
    ("GET", "/fhir/$export", "operation", None, None, None, None),
    # Not an R4 type: nothing of the path is kept.
    ("GET", "/fhir/Smith/9990001236", "read", None, None, None, None),
    ("GET", "/fhir/Smith", "search-type", None, None, None, None),
    # Not a valid id (a space, too long): the id is not kept.
    ("GET", "/fhir/Patient/John Smith", "read", "Patient", None, None, None),
    ("GET", "/fhir/Patient/" + "x" * 65, "read", "Patient", None, None, None),
    ("GET", "/fhir/Patient/p1/a/b/c", "read", "Patient", "p1", None, "Patient/p1"),
]


@pytest.mark.parametrize(("method", "path", "interaction", "rtype", "rid", "vid", "patient"), CASES)
def test_the_entry_of_a_refused_request(
    method: str,
    path: str,
    interaction: str,
    rtype: str | None,
    rid: str | None,
    vid: int | None,
    patient: str | None,
) -> None:
    entry = refused_entry(method, path)
    found = (entry.interaction, entry.resource_type, entry.resource_id, entry.version_id)
    assert found == (interaction, rtype, rid, vid)
    assert entry.patient == patient
    assert entry.query is None and entry.entities == []


def test_a_validation_reason_names_declared_parameters_never_values() -> None:
    errors = [
        {"loc": ("query", "_count"), "type": "int_parsing", "input": "9990001236"},
        {"loc": ("body", "name", "Smith"), "type": "missing", "input": {"Smith": 1}},
        {"loc": (), "type": "value_error"},
    ]
    reason = validation_reason(errors)
    assert reason == (
        "invalid request: query._count (int_parsing), body (missing), request (value_error)"
    )
