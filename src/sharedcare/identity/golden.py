"""The golden record as a FHIR R4 Patient owned by the ICS.

A golden Patient (https://hl7.org/fhir/R4/patient.html) has:

* ``id`` = the stable golden id, also given as an identifier in the system
  :data:`GOLDEN_SYSTEM` so that other systems can hold it;
* ``meta.source`` = :data:`GOLDEN_SOURCE` and the ``meta.tag`` :data:`GOLDEN_TAG`;
* the surviving values (:mod:`~sharedcare.identity.survivorship`): NHS number (as an
  identifier in https://fhir.nhs.uk/Id/nhs-number), official name, gender, birth date and
  home address;
* one ``link`` of type ``seealso`` to each source Patient in it. Per the link-type code
  system (https://hl7.org/fhir/R4/codesystem-link-type.html) ``seealso`` says the golden
  record is "in use and valid" and the other "is known to contain data about the same
  person", possibly overlapping or contradicting it. ``refer`` would say the golden record
  is *not* the main source of information, the opposite of its role; and the sources are
  kept exactly as sent, so they carry no link back;
* one ``link`` of type ``replaces`` to each golden record merged into it.

A golden record merged into another is kept with ``active = false`` and a single ``link``
of type ``replaced-by`` to the survivor (https://hl7.org/fhir/R4/patient.html#links): its id
still resolves. One left with no source records (all deleted at source, say) is kept with
``active = false`` and no links.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.survivorship import GoldenRecord

__all__ = [
    "GOLDEN_SOURCE",
    "GOLDEN_SYSTEM",
    "GOLDEN_TAG",
    "empty_patient",
    "golden_patient",
    "retired_patient",
]

GOLDEN_SYSTEM = "https://sharedcare.nhs.uk/id/golden-patient"
"""Identifier system of golden-record ids."""

GOLDEN_SOURCE = "urn:sharedcare:identity:golden"
"""``meta.source`` of every golden Patient."""

GOLDEN_TAG = {
    "system": "https://sharedcare.nhs.uk/CodeSystem/identity",
    "code": "golden",
    "display": "Golden record of the master patient index",
}


def _base(golden_id: str, active: bool) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": golden_id,
        "meta": {"source": GOLDEN_SOURCE, "tag": [dict(GOLDEN_TAG)]},
        "identifier": [{"use": "official", "system": GOLDEN_SYSTEM, "value": golden_id}],
        "active": active,
    }


def golden_patient(
    golden: GoldenRecord, sources: Iterable[str], replaces: Iterable[str] = ()
) -> dict[str, Any]:
    """The Patient for an active golden record.

    Args:
        golden: Surviving values (from :meth:`Matcher.golden`).
        sources: Ids of its source Patients.
        replaces: Ids of golden records merged into it.
    """
    patient = _base(golden.golden_id, True)
    if golden.nhs_number:
        patient["identifier"].append({"system": NHS_NUMBER_SYSTEM, "value": golden.nhs_number})
    if golden.given_names or golden.family_name:
        name: dict[str, Any] = {"use": "official"}
        if golden.family_name:
            name["family"] = golden.family_name
        if golden.given_names:
            name["given"] = list(golden.given_names)
        patient["name"] = [name]
    if golden.sex:
        patient["gender"] = golden.sex
    if golden.birth_date:
        patient["birthDate"] = golden.birth_date.isoformat()
    if golden.address or golden.postcode:
        address: dict[str, Any] = {"use": "home"}
        if golden.address_lines or golden.city:  # as the source gave them
            if golden.address_lines:
                address["line"] = list(golden.address_lines)
            if golden.city:
                address["city"] = golden.city
        elif golden.address:  # a record from a CSV row or an older index: one string
            address["line"] = [part for part in golden.address.split(", ") if part]
        if golden.postcode:
            address["postalCode"] = golden.postcode
        patient["address"] = [address]
    links = [{"other": {"reference": f"Patient/{s}"}, "type": "seealso"} for s in sorted(sources)]
    links += [
        {"other": {"reference": f"Patient/{r}"}, "type": "replaces"} for r in sorted(replaces)
    ]
    if links:
        patient["link"] = links
    return patient


def retired_patient(golden_id: str, replaced_by: str) -> dict[str, Any]:
    """The Patient for a golden record merged into ``replaced_by``."""
    patient = _base(golden_id, False)
    patient["link"] = [{"other": {"reference": f"Patient/{replaced_by}"}, "type": "replaced-by"}]
    return patient


def empty_patient(golden_id: str) -> dict[str, Any]:
    """The Patient for a golden record that has no source records left."""
    return _base(golden_id, False)
