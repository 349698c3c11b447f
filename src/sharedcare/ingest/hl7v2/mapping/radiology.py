"""Radiology ORU: the report text on the DiagnosticReport, plus an ImagingStudy.

A result group is radiology when OBR-24 (diagnostic service section, table 0074) names an
imaging section, or its OBX codes use the DICOM report-section convention (``&GDT`` body
text, ``&IMP`` impression, ``&ADT`` addendum). The report's text results become
``DiagnosticReport.presentedForm`` (text/plain), the impression becomes ``conclusion``, and
an ImagingStudy (https://hl7.org/fhir/R4/imagingstudy.html) is identified by the DICOM
study instance UID when the message carries one (an OBX of type UI, or the IHE ``ZDS-1``)
and by the accession number (the filler order number).
"""

from __future__ import annotations

import base64
from typing import Any

from sharedcare.ingest.hl7v2.fields import SegmentView
from sharedcare.ingest.hl7v2.mapping.context import MappingContext
from sharedcare.ingest.hl7v2.mapping.groups import OrderGroup
from sharedcare.ingest.hl7v2.mapping.parties import practitioner

__all__ = ["RADIOLOGY_SECTIONS", "add_imaging", "is_radiology"]

RADIOLOGY_SECTIONS = frozenset(
    {
        "RAD",
        "CT",
        "MR",
        "MRI",
        "US",
        "NMR",
        "NMS",
        "NM",
        "RX",
        "XR",
        "CUS",
        "OUS",
        "VUS",
        "XRC",
        "MG",
        "MAM",
        "DX",
        "CR",
        "PT",
        "PET",
        "IR",
        "RF",
        "FL",
        "XA",
        "IMG",
        "DI",
    }
)
_MODALITY = {
    "CT": "CT",
    "MR": "MR",
    "MRI": "MR",
    "NMR": "MR",
    "US": "US",
    "CUS": "US",
    "OUS": "US",
    "VUS": "US",
    "NM": "NM",
    "NMS": "NM",
    "PT": "PT",
    "PET": "PT",
    "MG": "MG",
    "MAM": "MG",
    "DX": "DX",
    "XR": "DX",
    "RX": "DX",
    "CR": "CR",
    "RF": "RF",
    "FL": "RF",
    "XA": "XA",
    "IR": "XA",
    "XRC": "XA",
}
_SECTION_CODES = ("&GDT", "&IMP", "&ADT", "&FND", "&REC", "GDT", "IMP", "ADT")
_TEXT_TYPES = ("TX", "FT", "ST")
_DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _obx_code(obx: SegmentView) -> str:
    """OBX-3.1 with any sub-components re-joined (``&GDT`` arrives as sub-components)."""
    return "&".join(obx.rep(3).subs(1)).upper()


def is_radiology(group: OrderGroup) -> bool:
    """Whether the result group is a radiology report."""
    if group.obr is not None and group.obr.v(24).upper() in RADIOLOGY_SECTIONS:
        return True
    for line in group.results:
        code, system = _obx_code(line.obx), line.obx.v(3, 3).upper()
        if system == "DCM" or code.endswith(_SECTION_CODES[:5]):
            return True
    return False


def _study_uid(ctx: MappingContext, group: OrderGroup) -> str:
    for line in group.results:
        if line.obx.v(2).upper() == "UI":
            return line.obx.v(5)
        if line.obx.v(3, 1) in ("113014", "&SUID", "SUID"):
            return line.obx.v(5)
    zds = ctx.parsed.first("ZDS")
    return zds.v(1) if zds else ""


def add_imaging(
    ctx: MappingContext,
    group: OrderGroup,
    report: dict[str, Any],
    subject: dict[str, str],
    key: tuple[str, ...],
) -> None:
    """Add the report text and an ImagingStudy to a radiology DiagnosticReport.

    Args:
        ctx: Mapping context.
        group: The radiology order group.
        report: The DiagnosticReport being built (updated in place).
        subject: Patient reference.
        key: The report's sender-scoped key.
    """
    obr = group.obr
    assert obr is not None
    body: list[str] = []
    impression: list[str] = []
    for line in group.results:
        obx = line.obx
        if obx.v(2).upper() not in _TEXT_TYPES:
            continue
        text = "\n".join(r.c(1) for r in obx.reps(5))
        code = (_obx_code(obx) + " " + obx.v(4)).upper()
        (impression if "IMP" in code else body).append(text)
    full_text = "\n".join(body + impression).strip()
    if full_text:
        report["presentedForm"] = [
            {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode(full_text.encode("utf-8")).decode("ascii"),
                "title": "Radiology report",
            }
        ]
    if impression:
        report["conclusion"] = "\n".join(impression).strip()
    study_uid = _study_uid(ctx, group)
    accession = next(
        (i for i in report.get("identifier", []) if i["type"]["coding"][0]["code"] == "FILL"), None
    )
    identifiers: list[dict[str, Any]] = []
    if study_uid:
        identifiers.append({"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"})
        if ctx.parsed.first("ZDS") is not None:
            ctx.note("the DICOM study instance UID was read from the ZDS segment")
    if accession:
        identifiers.append(
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                    ]
                },
                "system": accession["system"],
                "value": accession["value"],
            }
        )
    study_key = ("UID", study_uid) if study_uid else (*key, "ImagingStudy")
    status = {"final": "available", "corrected": "available", "cancelled": "cancelled"}.get(
        report["status"], "registered"
    )
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": ctx.resource_id("ImagingStudy", *study_key),
        "status": status,
        "subject": subject,
        "procedureCode": [report["code"]],
    }
    if identifiers:
        study["identifier"] = identifiers
    modality = _MODALITY.get(obr.v(24).upper())
    if modality:
        study["modality"] = [{"system": _DCM, "code": modality}]
    if "effectiveDateTime" in report:
        study["started"] = report["effectiveDateTime"]
    if "basedOn" in report:
        study["basedOn"] = report["basedOn"]
    referrer = practitioner(ctx, obr.rep(16))
    if referrer:
        study["referrer"] = referrer
    if report.get("resultsInterpreter"):
        study["interpreter"] = report["resultsInterpreter"]
    report["imagingStudy"] = [ctx.add(study)]
