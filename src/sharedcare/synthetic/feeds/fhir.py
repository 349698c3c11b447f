"""FHIR R4 bundles shaped like UK Core: a GP practice's and Dorset HealthCare's view.

Each bundle is a ``transaction`` (https://hl7.org/fhir/R4/http.html#transaction) of ``PUT``
entries with ids fixed by the generator, so loading the same file twice is idempotent. Resources
declare their UK Core profile in ``meta.profile``
(https://simplifier.net/hl7fhirukcorer4). Resources are plain dicts serialised with orjson.
"""

from __future__ import annotations

import random
from datetime import date, datetime
from functools import cache
from typing import Any

import orjson

from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.synthetic import codes
from sharedcare.synthetic.events import Care
from sharedcare.synthetic.people import Person
from sharedcare.synthetic.quality import OrgRecord

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/"
LOCAL_ID_SYSTEM = "https://sharedcare.example.org/Id/{org}/patient"
"""Identifier system for an organisation's own patient numbers (example.org: synthetic only)."""
FULL_URL_BASE = "https://sharedcare.example.org/fhir/"
"""Base of entry fullUrls, so relative references resolve inside the bundle
(https://hl7.org/fhir/R4/bundle.html#references)."""
ETHNIC_EXTENSION = UKCORE + "Extension-UKCore-EthnicCategory"
ETHNIC_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
VERIFICATION_EXTENSION = UKCORE + "Extension-UKCore-NHSNumberVerificationStatus"
VERIFICATION_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LSOA_EXTENSION = "https://sharedcare.example.org/fhir/StructureDefinition/Extension-AddressLSOA2011"
"""sharedcare's address extension for the 2011 LSOA of an address (``valueCode``). UK Core
has no element for it; the ``people`` analytics view reads it for IMD and Core20."""

Resource = dict[str, Any]


@cache
def _cc(code: codes.Code) -> dict[str, Any]:
    """CodeableConcept for a code (cached: the same dict is shared, never mutated)."""
    return {"coding": [{"system": code.system, "code": code.code, "display": code.display}]}


def _dt(moment: datetime) -> str:
    m = moment
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:00+00:00"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


class BundleBuilder:
    """Collects resources for one patient's bundle.

    Resource ids are ``<local patient id>-<n>``: unique across the run because local ids are
    unique per organisation and carry an organisation prefix, and much shorter than UUIDs.
    """

    def __init__(self, rng: random.Random, id_prefix: str) -> None:
        self.rng = rng
        self.prefix = id_prefix
        self.entries: list[Resource] = []
        self.counts: dict[str, int] = {}

    def add(self, resource: Resource) -> str:
        """Add a resource (assigning an id if it has none) and return its reference."""
        rtype = resource["resourceType"]
        rid = resource.get("id")
        if rid is None:
            rid = resource["id"] = f"{self.prefix}-{len(self.entries)}"
        self.entries.append(
            {
                "fullUrl": f"{FULL_URL_BASE}{rtype}/{rid}",
                "resource": resource,
                "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
            }
        )
        self.counts[rtype] = self.counts.get(rtype, 0) + 1
        return f"{rtype}/{rid}"

    def dumps(self) -> bytes:
        """The bundle as one line of JSON."""
        bundle = {
            "resourceType": "Bundle",
            "id": _uuid(self.rng),
            "type": "transaction",
            "entry": self.entries,
        }
        return orjson.dumps(bundle)


def organization(ods_code: str, name: str) -> Resource:
    """UK Core Organization identified by its ODS code."""
    return {
        "resourceType": "Organization",
        "id": ods_code,
        "meta": {"profile": [UKCORE + "UKCore-Organization"]},
        "identifier": [{"system": ODS_SYSTEM, "value": ods_code}],
        "active": True,
        "name": name,
    }


def patient(
    person: Person, record: OrgRecord, org: str, gp_ref: str | None, patient_id: str
) -> Resource:
    """UK Core Patient as the organisation holds it (its own faults included)."""
    identifiers: list[dict[str, Any]] = []
    if record.nhs_number:
        identifiers.append(
            {
                "extension": [
                    {
                        "url": VERIFICATION_EXTENSION,
                        "valueCodeableConcept": {
                            "coding": [
                                {
                                    "system": VERIFICATION_SYSTEM,
                                    "code": "01",
                                    "display": "Number present and verified",
                                }
                            ]
                        },
                    }
                ],
                "system": NHS_NUMBER_SYSTEM,
                "value": record.nhs_number,
            }
        )
    identifiers.append({"system": LOCAL_ID_SYSTEM.format(org=org), "value": record.local_id})
    a = record.address
    home: dict[str, Any] = {
        "use": "home",
        "line": [a.line],
        "city": a.town,
        "postalCode": a.postcode,
        "country": "GBR",
    }
    if a.lsoa:
        # The LSOA of the address this organisation holds (an out-of-date one included).
        home["extension"] = [{"url": LSOA_EXTENSION, "valueCode": a.lsoa}]
    resource: Resource = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": {"profile": [UKCORE + "UKCore-Patient"]},
        "extension": [
            {
                "url": ETHNIC_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": ETHNIC_SYSTEM,
                            "code": person.ethnic,
                            "display": codes.ETHNIC_CATEGORIES[person.ethnic],
                        }
                    ]
                },
            }
        ],
        "identifier": identifiers,
        "name": [{"use": "official", "family": record.family, "given": [record.given]}],
        "gender": "male" if person.male else "female",
        "birthDate": record.birth_date.isoformat(),
        "address": [home],
    }
    if person.death_date is not None:
        resource["deceasedDateTime"] = person.death_date.isoformat()
    if gp_ref:
        resource["generalPractitioner"] = [{"reference": gp_ref}]
    return resource


def condition(subject: str, code: codes.Code, onset: date) -> Resource:
    """UK Core Condition on the problem list."""
    return {
        "resourceType": "Condition",
        "meta": {"profile": [UKCORE + "UKCore-Condition"]},
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
        "code": _cc(code),
        "subject": {"reference": subject},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
    }


def _observation(
    subject: str, category: str, code: codes.Code, when: datetime, encounter: str | None
) -> Resource:
    obs: Resource = {
        "resourceType": "Observation",
        "meta": {"profile": [UKCORE + "UKCore-Observation"]},
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": _cc(code),
        "subject": {"reference": subject},
        "effectiveDateTime": _dt(when),
    }
    if encounter:
        obs["encounter"] = {"reference": encounter}
    return obs


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def gp_bundle(
    person: Person,
    record: OrgRecord,
    care: Care,
    practice_code: str,
    practice_name: str,
    rng: random.Random,
    census_end: date,
) -> BundleBuilder:
    """The GP practice's record of one patient."""
    b = BundleBuilder(rng, record.local_id)
    org_ref = b.add(organization(practice_code, practice_name))
    subject = b.add(patient(person, record, practice_code, org_ref, record.local_id))
    for group, onset in person.conditions.items():
        code = codes.CONDITIONS[group].snomed
        if group == "STIA" and not person.stroke:
            code = codes.TIA
        b.add(condition(subject, code, onset))
    last = person.death_date or census_end
    if person.age_on(last) >= 16:
        smoke = _observation(
            subject, "social-history", codes.SMOKING_STATUS, _noon(person.registered), None
        )
        smoke["valueCodeableConcept"] = _cc(person.smoking)
        b.add(smoke)
    if person.frailty:
        frail = _observation(subject, "survey", codes.FRAILTY, _noon(last), None)
        frail["valueCodeableConcept"] = {"text": f"{person.frailty.capitalize()} (eFI category)"}
        b.add(frail)
    for group, onset in person.conditions.items():
        for med in codes.MEDICATIONS.get(group, ()):
            b.add(
                {
                    "resourceType": "MedicationRequest",
                    "meta": {"profile": [UKCORE + "UKCore-MedicationRequest"]},
                    "status": "stopped" if person.death_date else "active",
                    "intent": "order",
                    "medicationCodeableConcept": _cc(med.code),
                    "subject": {"reference": subject},
                    "authoredOn": max(onset, person.registered).isoformat(),
                    "requester": {"reference": org_ref},
                    "dosageInstruction": [{"text": med.dosage}],
                }
            )
    if person.allergies:
        for allergy in person.allergies:
            b.add(_allergy(subject, allergy))
    elif person.index % 2 == 0:
        b.add(_allergy(subject, codes.NO_KNOWN_DRUG_ALLERGY))
    for consult in care.gp:
        enc: Resource = {
            "resourceType": "Encounter",
            "meta": {"profile": [UKCORE + "UKCore-Encounter"]},
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB"},
            "type": [_cc(codes.ENCOUNTER_GP)],
            "subject": {"reference": subject},
            "period": {"start": _dt(consult.when)},
            "serviceProvider": {"reference": org_ref},
        }
        if consult.review:
            enc["reasonCode"] = [_cc(codes.CONDITIONS[consult.review].snomed)]
        enc_ref = b.add(enc)
        if consult.blood_pressure:
            bp = _observation(subject, "vital-signs", codes.BP_PANEL, consult.when, enc_ref)
            systolic, diastolic = consult.blood_pressure
            bp["component"] = [
                {"code": _cc(codes.SYSTOLIC), "valueQuantity": _quantity(systolic, "mm[Hg]")},
                {"code": _cc(codes.DIASTOLIC), "valueQuantity": _quantity(diastolic, "mm[Hg]")},
            ]
            b.add(bp)
        if consult.bmi:
            bmi = _observation(subject, "vital-signs", codes.BMI, consult.when, enc_ref)
            bmi["valueQuantity"] = _quantity(consult.bmi, "kg/m2")
            b.add(bmi)
        if rng.random() < 0.08:
            med = rng.choice(codes.ACUTE_MEDICATIONS)
            b.add(
                {
                    "resourceType": "MedicationRequest",
                    "meta": {"profile": [UKCORE + "UKCore-MedicationRequest"]},
                    "status": "completed",
                    "intent": "order",
                    "medicationCodeableConcept": _cc(med.code),
                    "subject": {"reference": subject},
                    "encounter": {"reference": enc_ref},
                    "authoredOn": _dt(consult.when),
                    "requester": {"reference": org_ref},
                    "dosageInstruction": [{"text": med.dosage}],
                }
            )
    hba1c = codes.LAB_PANELS["HBA1C"][1][0]
    for lab in care.labs:
        if lab.panel == "HBA1C" and lab.requester == practice_code:
            obs = _observation(subject, "laboratory", hba1c.code, lab.reported, None)
            obs["valueQuantity"] = _quantity(lab.values[0], hba1c.unit)
            obs["referenceRange"] = [{"high": _quantity(hba1c.high, hba1c.unit)}]
            b.add(obs)
    return b


def _allergy(subject: str, code: codes.Code) -> Resource:
    category = next((c for a, c, _ in codes.ALLERGIES if a == code), None)
    resource: Resource = {
        "resourceType": "AllergyIntolerance",
        "meta": {"profile": [UKCORE + "UKCore-AllergyIntolerance"]},
        "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
        "code": _cc(code),
        "patient": {"reference": subject},
    }
    if category:
        resource["category"] = [category]
    return resource


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, 0)


DHC_CODE = "RDY"
DHC_NAME = "Dorset HealthCare University NHS Foundation Trust"


def dhc_bundle(person: Person, record: OrgRecord, care: Care, rng: random.Random) -> BundleBuilder:
    """Dorset HealthCare's record: community and mental-health contacts, crisis referrals."""
    b = BundleBuilder(rng, record.local_id)
    org_ref = b.add(organization(DHC_CODE, DHC_NAME))
    subject = b.add(patient(person, record, DHC_CODE, None, record.local_id))
    for group in ("MH", "DEP", "DEM"):
        if group in person.conditions:
            b.add(condition(subject, codes.CONDITIONS[group].snomed, person.conditions[group]))
    for contact in care.community:
        if contact.kind == "crisis-referral":
            b.add(
                {
                    "resourceType": "ServiceRequest",
                    "meta": {"profile": [UKCORE + "UKCore-ServiceRequest"]},
                    "status": "completed",
                    "intent": "order",
                    "priority": "urgent",
                    "code": {"text": "Referral to crisis resolution and home treatment team"},
                    "subject": {"reference": subject},
                    "authoredOn": _dt(contact.when),
                    "performer": [{"reference": org_ref, "display": contact.service}],
                }
            )
            continue
        home = contact.kind == "community"
        b.add(
            {
                "resourceType": "Encounter",
                "meta": {"profile": [UKCORE + "UKCore-Encounter"]},
                "status": "finished",
                "class": {"system": ACT_CODE, "code": "HH" if home else "AMB"},
                "serviceType": {"text": contact.service},
                "subject": {"reference": subject},
                "period": {"start": _dt(contact.when)},
                "serviceProvider": {"reference": org_ref},
            }
        )
    return b
