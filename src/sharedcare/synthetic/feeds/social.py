"""Council social-care extracts and voluntary-sector referrals, as CSV rows.

The councils (Dorset Council, BCP Council) export assessments and care packages with their own
person ids; a share of rows carries no NHS number. Voluntary-sector referrals often carry none.
Council directories are named by the councils' ONS codes because their ODS codes could not be
confirmed (see the reference data's SOURCES.md); the voluntary sector uses the local code ``VCS``.
"""

from __future__ import annotations

import random

from sharedcare import reference
from sharedcare.synthetic.events import Care
from sharedcare.synthetic.quality import DataQuality, OrgRecord

VCS_CODE = "VCS"
COUNCIL_NAMES = {reference.LAD_DORSET: "Dorset Council", reference.LAD_BCP: "BCP Council"}

ASSESSMENT_COLUMNS = (
    "assessment_id",
    "council_person_id",
    "nhs_number",
    "given_name",
    "family_name",
    "date_of_birth",
    "address_line",
    "town",
    "postcode",
    "assessment_date",
    "assessment_type",
    "outcome",
)
PACKAGE_COLUMNS = (
    "package_id",
    "council_person_id",
    "nhs_number",
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "service",
    "start_date",
    "end_date",
    "hours_per_week",
)
VCS_COLUMNS = (
    "referral_id",
    "received_date",
    "service",
    "referrer_ods",
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "nhs_number",
)


def council_rows(
    record: OrgRecord, care: Care, rng: random.Random, dq: DataQuality
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(assessment rows, package rows) for one person at their council."""
    assessments: list[tuple[str, ...]] = []
    packages: list[tuple[str, ...]] = []
    a = record.address
    for n, sc in enumerate(care.social):
        nhs = "" if rng.random() < dq.council_row_without_nhs_number else record.nhs_number or ""
        assessments.append(
            (
                f"{record.local_id}-A{n}",
                record.local_id,
                nhs,
                record.given,
                record.family,
                record.birth_date.isoformat(),
                a.line,
                a.town,
                a.postcode,
                sc.assessed.isoformat(),
                sc.assessment_type,
                sc.outcome,
            )
        )
        if sc.package and sc.package_start:
            nhs = (
                "" if rng.random() < dq.council_row_without_nhs_number else record.nhs_number or ""
            )
            packages.append(
                (
                    f"{record.local_id}-P{n}",
                    record.local_id,
                    nhs,
                    record.given,
                    record.family,
                    record.birth_date.isoformat(),
                    a.postcode,
                    sc.package,
                    sc.package_start.isoformat(),
                    sc.package_end.isoformat() if sc.package_end else "",
                    f"{sc.hours_per_week:g}" if sc.hours_per_week else "",
                )
            )
    return assessments, packages


def vcs_rows(
    record: OrgRecord, care: Care, rng: random.Random, dq: DataQuality
) -> list[tuple[str, ...]]:
    """Voluntary-sector referral rows; each referral has its own id (there is no person id)."""
    rows: list[tuple[str, ...]] = []
    for n, ref in enumerate(care.vcs):
        nhs = "" if rng.random() < dq.vcs_row_without_nhs_number else record.nhs_number or ""
        rows.append(
            (
                f"{record.local_id}-{n}",
                ref.when.isoformat(),
                ref.service,
                ref.referrer,
                record.given,
                record.family,
                record.birth_date.isoformat(),
                record.address.postcode,
                nhs,
            )
        )
    return rows
