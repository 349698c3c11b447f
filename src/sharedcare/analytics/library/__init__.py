"""The shipped library of SQL-on-FHIR v2 ViewDefinitions (package data, one JSON file each).

Views flatten the record into the tables indicators are written over:

========================  ===================  ==============================================
view                      resource             one row per
========================  ===================  ==============================================
``people``                Patient              Patient record (sex, birth, ethnicity, LSOA, GP)
``conditions``            Condition            SNOMED CT coding of a Condition
``observations``          Observation          blood pressure, HbA1c or BMI measurement
``encounters``            Encounter            encounter / admission
``medications``           MedicationRequest    medication request
``results``               DiagnosticReport     report (effective, issued, site)
``specimens``             Specimen             specimen (collected, received)
``referrals``             ServiceRequest       referral (RTT, voluntary sector, crisis team)
``rtt_pathways``          EpisodeOfCare        RTT pathway (clock start / stop)
``stroke_admissions``     Encounter            SSNAP stroke admission
``stroke_procedures``     Procedure            SSNAP brain imaging / thrombolysis
``patient_links``         Patient (golden)     source record linked to a golden record
========================  ===================  ==============================================

Every view is validated by the view engine (``sharedcare.analytics.views.parse_view``) when
loaded. Spec: https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson

from sharedcare.analytics.views import ViewDefinition, parse_view

__all__ = ["UnknownViewError", "load_view", "parsed_view", "view_names"]


class UnknownViewError(LookupError):
    """No view of that name is in the library."""


@cache
def view_names() -> tuple[str, ...]:
    """Names of every view in the library, sorted."""
    files = resources.files(__name__).iterdir()
    return tuple(sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json")))


def load_view(name: str) -> dict[str, Any]:
    """The ViewDefinition JSON of a library view (a fresh copy the caller may change).

    Raises:
        UnknownViewError: no view of that name.
    """
    if name not in view_names():
        raise UnknownViewError(
            f"no library view named '{name}'; choose one of: {', '.join(view_names())}"
        )
    data = orjson.loads(resources.files(__name__).joinpath(f"{name}.json").read_bytes())
    if not isinstance(data, dict):
        raise UnknownViewError(f"library view '{name}' is not a JSON object")
    return data


@cache
def parsed_view(name: str) -> ViewDefinition:
    """A library view, validated by the view engine (cached)."""
    return parse_view(load_view(name))
