"""People, places and organisations named in a message: XCN, PL and XON to resources.

Following the v2-to-FHIR XCN[Practitioner], PL[Location] and XON[Organization] maps, each
becomes a small resource with a deterministic id scoped to the sending facility, so the
same clinician or ward seen in many messages is one resource.
"""

from __future__ import annotations

from typing import Any

from sharedcare.ingest.hl7v2.fields import Composite
from sharedcare.ingest.hl7v2.mapping.context import MappingContext

__all__ = ["location", "organization", "practitioner"]


def practitioner(ctx: MappingContext, rep: Composite) -> dict[str, Any] | None:
    """XCN (id^family^given^second^suffix^prefix^degree^^authority) to a Practitioner.

    Returns:
        A Reference to the Practitioner, or ``None`` when the XCN is empty.
    """
    values = rep.values(13)  # values[i - 1] is component i (its first sub-component)
    ident_value = values[0]
    family, given = values[1], [g for g in (values[2], values[3]) if g]
    if not ident_value and not family and not given:
        return None
    resource: dict[str, Any] = {"resourceType": "Practitioner"}
    name: dict[str, Any] = {}
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    if values[5]:
        name["prefix"] = [values[5]]
    if values[4]:
        name["suffix"] = [values[4]]
    if name:
        resource["name"] = [name]
    if ident_value:
        system = ctx.identifier_system(values[8], rep.c(9, 2), rep.c(9, 3), kind="practitioner")
        if values[12].upper() == "NPI" and values[8].upper() == "NPI":
            system = "http://hl7.org/fhir/sid/us-npi"
        resource["identifier"] = [{"system": system, "value": ident_value}]
        resource["id"] = ctx.resource_id("Practitioner", system, ident_value)
    else:
        resource["id"] = ctx.resource_id("Practitioner", ctx.facility, family, *given)
    reference = ctx.add(resource)
    display = " ".join([*given, family]).strip()
    if display:
        reference["display"] = display
    return reference


def location(ctx: MappingContext, rep: Composite) -> dict[str, Any] | None:
    """PL (point of care^room^bed^facility^status^type^building^floor^description) to a
    Location, part-of chained to nothing (one Location per distinct bed/room/ward).

    Returns:
        A Reference to the Location, or ``None`` when the PL is empty.
    """
    values = rep.values(9)  # values[i - 1] is component i (its first sub-component)
    labels = values[:3]  # point of care, room, bed
    facility = values[3] or rep.c(4, 2)
    building, floor, description = values[6], values[7], values[8]
    key = [facility, *labels, building, floor]
    if not any(key) and not description:
        return None
    name = description or " / ".join(p for p in (facility, building, floor, *labels) if p)
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": ctx.resource_id("Location", ctx.facility, *key, description),
        "name": name,
        "mode": "instance",
    }
    physical = "bd" if labels[2] else ("ro" if labels[1] else ("wa" if labels[0] else None))
    if physical:
        resource["physicalType"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
                    "code": physical,
                }
            ]
        }
    reference = ctx.add(resource)
    reference["display"] = name
    return reference


def organization(ctx: MappingContext, rep: Composite) -> dict[str, Any] | None:
    """XON (name^type^id^...^assigning authority^...^identifier) to an Organization."""
    name = rep.c(1)
    ident = rep.c(10) or rep.c(3)
    if not name and not ident:
        return None
    resource: dict[str, Any] = {"resourceType": "Organization"}
    if name:
        resource["name"] = name
    if ident:
        system = ctx.identifier_system(rep.c(6, 1), rep.c(6, 2), rep.c(6, 3), kind="organization")
        resource["identifier"] = [{"system": system, "value": ident}]
        resource["id"] = ctx.resource_id("Organization", system, ident)
    else:
        resource["id"] = ctx.resource_id("Organization", ctx.facility, name)
    reference = ctx.add(resource)
    if name:
        reference["display"] = name
    return reference
