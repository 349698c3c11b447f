"""Search index extraction: typed values, normalisation, date precision, composites."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from sharedcare.fhir.definitions import search_parameters
from sharedcare.fhir.search_index import (
    DATE_MAX,
    DATE_MIN,
    CompositeValue,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    _compiled,
    compile_stats,
    extract_index,
    normalize_string,
)
from sharedcare.fhir.xml_format import xml_to_json

EXAMPLES = Path("/work/shared/conformance/uk-core/examples")
US = 1_000_000


def _by(values: list[Any], param: str) -> list[Any]:
    return [v for v in values if v.param == param]


def test_patient_values(patient: dict[str, Any]) -> None:
    idx = extract_index(patient)
    assert _by(idx, "family") == [StringValue("family", "smith", "Smith")]
    assert _by(idx, "gender") == [
        TokenValue("gender", "http://hl7.org/fhir/administrative-gender", "male", None)
    ]
    assert _by(idx, "identifier") == [
        TokenValue("identifier", "https://fhir.nhs.uk/Id/nhs-number", "9000000009", None)
    ]
    assert _by(idx, "phone") == [TokenValue("phone", None, "01632 960587", None)]
    assert _by(idx, "email") == [TokenValue("email", None, "r@example.org", None)]
    assert _by(idx, "general-practitioner") == [
        ReferenceValue("general-practitioner", "Organization", "o1", None, None)
    ]
    assert {v.normalized for v in _by(idx, "address")} == {
        "1 trevelyan square",
        "boar lane",
        "leeds",
        "ls1 6ae",
        "gb",
    }
    assert _by(idx, "_id") == [TokenValue("_id", None, "p1", None)]
    assert _by(idx, "deceased") == [TokenValue("deceased", None, "false", None)]
    patient["deceasedDateTime"] = "2020-01-01"
    assert _by(extract_index(patient), "deceased")[0].code == "true"


def test_date_precision(patient: dict[str, Any]) -> None:
    patient["birthDate"] = "1970"
    (year,) = _by(extract_index(patient), "birthdate")
    assert (year.low, year.high) == (0, 365 * 86400 * US)
    patient["birthDate"] = "1970-02"
    (month,) = _by(extract_index(patient), "birthdate")
    assert (month.low, month.high) == (31 * 86400 * US, 59 * 86400 * US)
    (last,) = _by(extract_index(patient), "_lastUpdated")
    assert last.high - last.low == US


def test_period_and_timing(encounter: dict[str, Any]) -> None:
    (date,) = _by(extract_index(encounter), "date")
    assert date.high - date.low == (45 * 60 + 1) * US
    del encounter["period"]["end"]
    (open_end,) = _by(extract_index(encounter), "date")
    assert open_end.high == DATE_MAX and open_end.low > DATE_MIN
    req = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "x"},
        "dosageInstruction": [{"timing": {"event": ["2021-03-04"]}}],
    }
    assert all(isinstance(v, DateValue) for v in extract_index(req) if v.param == "date")


def test_observation_tokens_quantities_and_composites(observation: dict[str, Any]) -> None:
    idx = extract_index(observation)
    assert TokenValue("code", None, None, "bp") in idx
    assert TokenValue("code", "http://snomed.info/sct", "75367002", "blood pressure") in idx
    quantities = _by(idx, "component-value-quantity")
    assert [q.value for q in quantities] == [Decimal(120), Decimal(80)]
    assert all(isinstance(q, QuantityValue) and q.code == "mm[Hg]" for q in quantities)
    comps = _by(idx, "component-code-value-quantity")
    assert len(comps) == 2 and all(isinstance(c, CompositeValue) for c in comps)
    first = comps[0].components
    assert first[0].code == "8480-6" and first[1].value == Decimal(120)
    assert _by(idx, "_profile") == [
        UriValue("_profile", "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation")
    ]


def test_resolve_filters_reference_targets(observation: dict[str, Any]) -> None:
    observation["subject"] = {"reference": "Group/g1"}
    idx = extract_index(observation)
    assert _by(idx, "patient") == []
    assert _by(idx, "subject") == [ReferenceValue("subject", "Group", "g1", None, None)]
    observation["subject"] = {
        "type": "Patient",
        "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"},
    }
    idx = extract_index(observation)
    assert _by(idx, "subject:identifier") == [
        TokenValue("subject:identifier", "https://fhir.nhs.uk/Id/nhs-number", "9000000009", None)
    ]


def test_absolute_and_versioned_references(observation: dict[str, Any]) -> None:
    observation["subject"] = {"reference": "https://example.org/fhir/Patient/9/_history/2"}
    (ref,) = _by(extract_index(observation), "subject")
    assert ref == ReferenceValue(
        "subject", "Patient", "9", "2", "https://example.org/fhir/Patient/9/_history/2"
    )
    observation["subject"] = {"reference": "#contained1"}
    assert _by(extract_index(observation), "subject") == []


def test_numbers_and_uris() -> None:
    risk = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": 0.25}],
    }
    assert _by(extract_index(risk), "probability") == [NumberValue("probability", Decimal("0.25"))]
    risk["prediction"] = [{"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.3}}}]
    assert [v.value for v in _by(extract_index(risk), "probability")] == [
        Decimal("0.1"),
        Decimal("0.3"),
    ]
    risk["meta"] = {"source": "urn:example:feed"}
    assert _by(extract_index(risk), "_source") == [UriValue("_source", "urn:example:feed")]
    questionnaire = {"resourceType": "Questionnaire", "status": "active", "url": "http://x.org/q"}
    assert _by(extract_index(questionnaire), "url") == [UriValue("url", "http://x.org/q")]


def test_string_normalisation() -> None:
    assert normalize_string("Zoë O'BRIÉN") == "zoe o'brien"
    assert normalize_string("ABC") == "abc"


def test_unknown_types_give_nothing() -> None:
    assert extract_index({"resourceType": "Nope"}) == []
    assert extract_index({}) == []


def test_every_r4_parameter_compiles_to_the_fast_path() -> None:
    stats = compile_stats()
    assert stats["total"] == sum(stats[k] for k in ("fast", "fallback", "skipped"))
    assert stats["fallback"] == 0
    assert stats["fast"] > 2500


def _json_key(v: Any) -> bytes:
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS, default=float)


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="UK Core examples not present")
def test_compiled_extractors_agree_with_fhirpathpy() -> None:
    """The fast path must yield what fhirpathpy yields for every parameter of every example.

    fhirpathpy lacks resolve() and Resource-typed paths, so those expressions are compared
    on their resource-typed spelling or skipped.
    """
    import fhirpathpy
    from fhirpathpy.models import models

    compared = 0
    for path in sorted(EXAMPLES.glob("*.xml")):
        resource = xml_to_json(path.read_bytes())
        rtype = resource["resourceType"]
        for c in _compiled(rtype):
            expr = search_parameters(rtype)[c.code].expression
            if c.composite or expr is None or "resolve()" in expr:
                continue
            expr = expr.replace("DomainResource.", rtype + ".").replace("Resource.", rtype + ".")
            want = fhirpathpy.compile(expr, models["r4"])(resource, {})
            got = [
                v
                for v, _leaf in c.extract(resource)
                if not (isinstance(v, dict) and set(v) <= {"id", "extension"})
            ]
            assert sorted(map(_json_key, got)) == sorted(map(_json_key, want)), (path.name, c.code)
            compared += 1
    assert compared > 4000
