"""The acute trusts' view: ADT, pathology and radiology HL7, SSNAP and RTT extracts.

Dorset County Hospital (RBD) runs one site; University Hospitals Dorset (R0D) runs Poole and
Royal Bournemouth under one hospital-number scheme. Each trust only sees the events at its own
sites and only knows the person through its own record(s).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sharedcare.synthetic import codes
from sharedcare.synthetic.events import Care
from sharedcare.synthetic.feeds.hl7v2 import MessageBuilder, hl7_ts, pv1
from sharedcare.synthetic.geography import ACUTE_SITES
from sharedcare.synthetic.people import Address, Person
from sharedcare.synthetic.quality import DataQuality, OrgRecord

SSNAP_COLUMNS = (
    "hospital_number",
    "nhs_number",
    "site",
    "arrival",
    "first_brain_imaging",
    "thrombolysis",
    "stroke_unit_arrival",
    "discharge",
)
RTT_COLUMNS = (
    "pathway_id",
    "hospital_number",
    "nhs_number",
    "site",
    "treatment_function_code",
    "treatment_function",
    "referrer_ods",
    "clock_start",
    "first_attendance",
    "clock_stop",
)


@dataclass(slots=True)
class AcuteOutput:
    """What one trust emits about one person."""

    messages: list[tuple[datetime, str, str, str]] = field(default_factory=list)
    """(message time, message type, stream, message text); stream names the output file kind:
    ``adt``, ``oru-path``, ``orm-rad`` or ``oru-rad``."""
    ssnap: list[tuple[str, ...]] = field(default_factory=list)
    rtt: list[tuple[str, ...]] = field(default_factory=list)


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    m = moment
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}"


def acute_feed(
    person: Person,
    care: Care,
    trust: str,
    records: list[OrgRecord],
    rng: random.Random,
    dq: DataQuality,
    builder: MessageBuilder,
    window_end: datetime,
) -> AcuteOutput:
    """Emit everything ``trust`` sends about ``person``."""
    out = AcuteOutput()
    sites = {i for i, s in enumerate(ACUTE_SITES) if s.trust_code == trust}
    main = records[0]
    dup = records[1] if len(records) > 1 else None

    # Which record each event is filed under: a duplicate catches some events, and a merge
    # (A40) may follow the last of them.
    def record_for() -> OrgRecord:
        return dup if dup is not None and rng.random() < 0.4 else main

    def pid(record: OrgRecord, moment: datetime, dead: datetime | None = None) -> str:
        with_nhs = rng.random() >= dq.message_without_nhs_number
        if "old-address" not in record.faults:
            day = moment.date()
            current = person.addresses[0]
            for a in person.addresses:
                if a.since <= day:
                    current = a
            if current is not record.address:
                record = _with_address(record, current)
        return builder.pid(person, record, with_nhs, dead)

    def emit(moment: datetime, kind: str, text: str, stream: str = "adt") -> None:
        out.messages.append((moment, kind, stream, text))

    dup_used: list[datetime] = []
    for visit_no, ae in enumerate(care.ae):
        if ae.site not in sites:
            continue
        rec = record_for()
        if rec is not main:
            dup_used.append(ae.departure)
        visit = f"{rec.local_id}V{visit_no:03d}"
        emit(
            ae.arrival,
            "ADT^A04",
            builder.adt(
                "A04",
                ae.arrival,
                ae.site,
                pid(rec, ae.arrival),
                pv1("E", ae.site, "ED", visit, admission_type="E", admitted=ae.arrival),
            ),
        )
        if rng.random() < 0.5:
            triage = ae.arrival + timedelta(minutes=rng.randint(5, 40))
            emit(
                triage,
                "ADT^A08",
                builder.adt(
                    "A08",
                    triage,
                    ae.site,
                    pid(rec, triage),
                    pv1("E", ae.site, "ED", visit, admission_type="E", admitted=ae.arrival),
                ),
            )
        adm = ae.admission
        if adm is None:
            emit(
                ae.departure,
                "ADT^A03",
                builder.adt(
                    "A03",
                    ae.departure,
                    ae.site,
                    pid(rec, ae.departure),
                    pv1(
                        "E",
                        ae.site,
                        "ED",
                        visit,
                        admission_type="E",
                        disposition="01",
                        admitted=ae.arrival,
                        discharged=ae.departure,
                    ),
                ),
            )
            continue
        first_ward, ward_time = adm.wards[0]
        ivisit = f"{rec.local_id}I{visit_no:03d}"
        emit(
            ward_time,
            "ADT^A01",
            builder.adt(
                "A01",
                ward_time,
                adm.site,
                pid(rec, ward_time),
                pv1(
                    "I",
                    adm.site,
                    first_ward,
                    ivisit,
                    admission_type="E",
                    prior_ward="ED",
                    admitted=ward_time,
                ),
                (
                    f"DG1|1||{adm.diagnosis.code}^{adm.diagnosis.display}^I10||{hl7_ts(ward_time)}|A",
                ),
            ),
        )
        previous = first_ward
        for ward, moved in adm.wards[1:]:
            emit(
                moved,
                "ADT^A02",
                builder.adt(
                    "A02",
                    moved,
                    adm.site,
                    pid(rec, moved),
                    pv1(
                        "I",
                        adm.site,
                        ward,
                        ivisit,
                        admission_type="E",
                        prior_ward=previous,
                        admitted=ward_time,
                    ),
                ),
            )
            previous = ward
        extra = [f"DG1|1||{adm.diagnosis.code}^{adm.diagnosis.display}^I10||{hl7_ts(ward_time)}|F"]
        if adm.procedure is not None:
            when = ward_time + timedelta(hours=rng.randint(4, 30))
            extra.append(
                f"PR1|1||{adm.procedure.code}^{adm.procedure.display}^{codes.OPCS4}||{hl7_ts(when)}"
            )
        disposition = "DIED" if adm.died else f"D2A{adm.pathway}"
        dead = adm.discharged if adm.died else None
        emit(
            adm.discharged,
            "ADT^A03",
            builder.adt(
                "A03",
                adm.discharged,
                adm.site,
                pid(rec, adm.discharged, dead),
                pv1(
                    "I",
                    adm.site,
                    previous,
                    ivisit,
                    admission_type="E",
                    disposition=disposition,
                    admitted=ward_time,
                    discharged=adm.discharged,
                ),
                tuple(extra),
            ),
        )
        if adm.stroke is not None:
            st = adm.stroke
            out.ssnap.append(
                (
                    rec.local_id,
                    rec.nhs_number or "",
                    ACUTE_SITES[adm.site].key,
                    _iso(st.arrival),
                    _iso(st.scan),
                    _iso(st.thrombolysis),
                    _iso(st.stroke_unit),
                    _iso(adm.discharged),
                )
            )

    for n, path in enumerate(care.rtt):
        if path.site not in sites:
            continue
        rec = record_for()
        seen = path.first_attendance
        if seen is not None:
            if rec is not main:
                dup_used.append(seen)
            visit = f"{rec.local_id}O{n:03d}"
            opd = pv1(
                "O",
                path.site,
                "OPD",
                visit,
                admission_type="C",
                service=path.specialty,
                admitted=seen,
            )
            emit(seen, "ADT^A04", builder.adt("A04", seen, path.site, pid(rec, seen), opd))
        out.rtt.append(
            (
                f"{trust}-RTT-{rec.local_id}-{n}",
                rec.local_id,
                rec.nhs_number or "",
                ACUTE_SITES[path.site].key,
                path.specialty,
                codes.TREATMENT_FUNCTIONS[path.specialty],
                path.referrer,
                path.clock_start.isoformat(),
                _iso(path.first_attendance),
                path.clock_stop.isoformat() if path.clock_stop else "",
            )
        )

    for n, lab in enumerate(care.labs):
        if lab.site not in sites:
            continue
        rec = record_for()
        placer = f"{ACUTE_SITES[lab.site].key}{rec.local_id}L{n:03d}"
        emit(
            lab.reported,
            "ORU^R01",
            builder.lab_result(lab, pid(rec, lab.reported), placer),
            "oru-path",
        )

    for n, study in enumerate(care.imaging):
        if study.site not in sites:
            continue
        rec = record_for()
        placer = f"{ACUTE_SITES[study.site].key}{rec.local_id}R{n:03d}"
        emit(
            study.ordered,
            "ORM^O01",
            builder.radiology_order(study, pid(rec, study.ordered), placer),
            "orm-rad",
        )
        reported = study.performed + timedelta(minutes=rng.randint(30, 2880))
        emit(
            reported,
            "ORU^R01",
            builder.radiology_report(study, pid(rec, reported), placer, reported),
            "oru-rad",
        )

    # Demographic updates after a house move (the trust learns of it at the next contact).
    if out.messages and "old-address" not in main.faults:
        first_contact = min(m[0] for m in out.messages)
        for address in person.addresses[1:]:
            moment = datetime.combine(address.since, datetime.min.time()) + timedelta(
                days=rng.randint(3, 60), hours=rng.randint(8, 17)
            )
            last = (
                datetime.combine(person.death_date, datetime.min.time())
                if person.death_date
                else window_end
            )
            if first_contact < moment < last:
                site = next(iter(sorted(sites)))
                emit(
                    moment,
                    "ADT^A31",
                    builder.adt("A31", moment, site, pid(main, moment), pv1("N", site, "", "")),
                )

    if dup is not None and dup_used and rng.random() < 0.6:
        moment = max(dup_used) + timedelta(days=rng.randint(1, 90))
        if moment < window_end and (person.death_date is None or moment.date() < person.death_date):
            site = next(iter(sorted(sites)))
            emit(moment, "ADT^A40", builder.merge(moment, site, pid(main, moment), dup.local_id))
    # The extract is taken on the census date: results and reports due later are not sent yet.
    out.messages = [m for m in out.messages if m[0] < window_end]
    return out


def _with_address(record: OrgRecord, address: Address) -> OrgRecord:
    return replace(record, address=address)
