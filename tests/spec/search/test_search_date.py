"""Spec: date search parameters (https://hl7.org/fhir/R4/search.html#date)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.cases import Case, check

TITLE = "Date parameters"
INTRO = (
    "Every date is a range set by its precision: `1950` is the whole year, `1950-06` the "
    "month, `2024-05-01T10:00:00Z` one second; a Period is the range from its start to its "
    "end, open where either is missing. Dates without a time zone are taken as UTC. The "
    "prefixes compare the range of the value searched for with the range of each target "
    "value, as R4 defines: `eq` (the default) when the search range contains the target; "
    "`ne` when it does not; `gt` / `lt` when the target reaches above / below the search "
    "range; `ge` / `le` either of those or contained; `sa` / `eb` when the target starts "
    "after / ends before it; `ap` when the two overlap once the search range is widened by "
    "10% of its distance from now (at least a day). So a date *overlaps* a period when the "
    "period matches both `ge` and `le` of that date."
)


def _patient(pid: str, birth: str | None) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if birth:
        patient["birthDate"] = birth
    return patient


def _encounter(eid: str, start: str | None, end: str | None) -> dict[str, Any]:
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "period": period,
    }


DATA = [
    _patient("jan1", "1950-01-01"),
    _patient("june", "1950-06"),
    _patient("y1960", "1960"),
    _patient("dec31", "1950-12-31"),
    _patient("unknown", None),
    _encounter("may", "2024-05-01T10:00:00Z", "2024-05-03T12:00:00Z"),
    _encounter("open", "2024-05-10", None),
    _encounter("april", "2024-04-01", "2024-04-02"),
    _encounter("local", "2024-06-01T09:00:00+01:00", "2024-06-01T09:30:00+01:00"),
]

CASES = [
    Case("Patient?birthdate=1950", ("jan1", "june", "dec31"), "eq: contained in the year"),
    Case("Patient?birthdate=1950-06", ("june",), "month precision"),
    Case("Patient?birthdate=1950-06-15", (), "a month is not contained in a day"),
    Case("Patient?birthdate=ne1950", ("y1960",), "ne (no value: no match)"),
    Case("Patient?birthdate=gt1950", ("y1960",), "gt: reaches beyond the year"),
    Case("Patient?birthdate=ge1950-06", ("june", "dec31", "y1960"), "ge: contained or after"),
    Case("Patient?birthdate=lt1950-06", ("jan1",), "lt: starts before"),
    Case("Patient?birthdate=le1950-06", ("jan1", "june"), "le: contained or before"),
    Case("Patient?birthdate=sa1950", ("y1960",), "sa: starts after"),
    Case("Patient?birthdate=eb1960", ("jan1", "june", "dec31"), "eb: ends before"),
    Case("Patient?birthdate=ap1950-01-01", ("jan1", "june", "dec31"),
         "ap: 10% of the distance from now"),
    Case("Patient?birthdate=ge1950&birthdate=lt1955", ("jan1", "june", "dec31"),
         "a range: repeated parameter ANDs"),
    Case("Patient?birthdate=1950-01-01,1960", ("jan1", "y1960"), "comma: OR"),
    Case("Patient?birthdate:missing=true", ("unknown",), ":missing"),
    Case("Patient?birthdate=not-a-date", 400, "malformed date: 400"),
    Case("Patient?birthdate=1950-13", 400, "impossible month: 400"),
    Case("Patient?birthdate=xx1950", 400, "unknown prefix: 400"),
    Case("Encounter?date=2024-05", ("may",), "a period contained in the month"),
    Case("Encounter?date=2024-05-02", (), "eq: a period is not contained in one day"),
    Case("Encounter?date=ge2024-05-02&date=le2024-05-02", ("may",),
         "overlap: ge and le of the same day"),
    Case("Encounter?date=ge2024-05-02", ("may", "open", "local"), "an open end reaches forever"),
    Case("Encounter?date=le2024-04-15", ("april",), "le: starts before"),
    Case("Encounter?date=sa2024-05-05", ("open", "local"), "sa"),
    Case("Encounter?date=eb2024-05-01", ("april",), "eb"),
    Case("Encounter?date=2024-06-01T08:00:00Z", (), "a second does not contain 30 minutes"),
    Case("Encounter?date=ge2024-06-01T08:00:00Z&date=le2024-06-01T08:15:00Z", ("local", "open"),
         "time zones are honoured (09:00+01:00 is 08:00Z)"),
    Case("Encounter?date=2024-06-01", ("local",), "a day contains the visit"),
    Case("Patient?_lastUpdated=gt2000-01-01", ("jan1", "june", "y1960", "dec31", "unknown"),
         "_lastUpdated"),
    Case("Patient?_lastUpdated=lt2000", (), "_lastUpdated lt"),
    Case("Patient?_lastUpdated=yesterday", 400, "malformed _lastUpdated: 400"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_date(searchable: TestClient, case: Case) -> None:
    check(searchable, case)
