"""Care over the window: what happened to one person, as the ground truth.

Events are generated from the person's own ``STREAM_EVENTS`` random stream. Rates are simple
and stated in the code; they aim at plausible volumes (roughly five GP consultations and a third
of an A&E attendance per person-year, more with age and long-term conditions), not at a
calibrated activity model.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sharedcare.synthetic import codes
from sharedcare.synthetic.geography import area_geography
from sharedcare.synthetic.people import STREAM_EVENTS, Census, Person, person_rng

STROKE_SITES = (0, 2)
"""Hyperacute stroke care: Dorset County Hospital and Royal Bournemouth (modelling choice)."""


@dataclass(slots=True)
class GpConsultation:
    """A GP appointment; ``review`` names the condition reviewed, if any."""

    when: datetime
    review: str | None
    blood_pressure: tuple[int, int] | None
    bmi: float | None


@dataclass(slots=True)
class StrokeTimes:
    """SSNAP-style timestamps for a stroke admission."""

    arrival: datetime
    scan: datetime
    thrombolysis: datetime | None
    stroke_unit: datetime


@dataclass(slots=True)
class LabOrder:
    """A pathology order processed by One Dorset Pathology at an acute site's laboratory."""

    site: int
    panel: str
    requested: datetime
    reported: datetime
    requester: str
    """GP practice ODS code, or ``ward:<code>`` for inpatient requests."""
    values: tuple[float, ...]


@dataclass(slots=True)
class Imaging:
    """A radiology study at an acute site."""

    site: int
    modality: str
    procedure: str
    ordered: datetime
    performed: datetime
    report: str
    requester: str


@dataclass(slots=True)
class Admission:
    """An inpatient spell with ward movements and a discharge-to-assess pathway."""

    site: int
    admitted: datetime
    discharged: datetime
    wards: list[tuple[str, datetime]]
    diagnosis: codes.Code
    procedure: codes.Code | None
    pathway: int
    """Discharge to assess pathway 0–3 (0 = home with no new support)."""
    died: bool = False
    stroke: StrokeTimes | None = None


@dataclass(slots=True)
class AeAttendance:
    """An emergency department attendance; ``admission`` is set when it led to one."""

    site: int
    arrival: datetime
    departure: datetime
    admission: Admission | None


@dataclass(slots=True)
class RttPathway:
    """An outpatient referral with its referral-to-treatment clock."""

    site: int
    specialty: str
    clock_start: date
    first_attendance: datetime | None
    """``None`` while the patient is still waiting at the end of the window (or died waiting)."""
    clock_stop: date | None
    referrer: str


@dataclass(slots=True)
class CommunityContact:
    """A Dorset HealthCare contact (community or mental health)."""

    when: datetime
    service: str
    kind: str
    """``community``, ``mental-health`` or ``crisis-referral``."""


@dataclass(slots=True)
class SocialCare:
    """A council social care assessment and, if agreed, a care package."""

    assessed: date
    assessment_type: str
    outcome: str
    package: str | None
    package_start: date | None
    package_end: date | None
    hours_per_week: float


@dataclass(slots=True)
class VcsReferral:
    """A voluntary-sector or social-prescribing referral."""

    when: date
    service: str
    referrer: str


@dataclass(slots=True)
class Care:
    """Everything that happened to one person in the window."""

    gp: list[GpConsultation] = field(default_factory=list)
    ae: list[AeAttendance] = field(default_factory=list)
    admissions: list[Admission] = field(default_factory=list)
    rtt: list[RttPathway] = field(default_factory=list)
    labs: list[LabOrder] = field(default_factory=list)
    imaging: list[Imaging] = field(default_factory=list)
    community: list[CommunityContact] = field(default_factory=list)
    social: list[SocialCare] = field(default_factory=list)
    vcs: list[VcsReferral] = field(default_factory=list)

    def acute_sites(self) -> set[int]:
        """Indexes of the acute sites this person has any record at."""
        sites = {a.site for a in self.ae} | {a.site for a in self.admissions}
        sites |= {r.site for r in self.rtt} | {lab.site for lab in self.labs}
        sites |= {i.site for i in self.imaging}
        return sites


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _moment(rng: random.Random, start: date, days: int, hours: tuple[int, int]) -> datetime:
    # int(random() * n) rather than randrange: same purpose, a third of the cost.
    day = start + timedelta(days=int(rng.random() * max(days, 1)))
    minute = hours[0] * 60 + int(rng.random() * (hours[1] - hours[0]) * 60)
    return datetime.combine(day, time(minute // 60, minute % 60))


_WARDS = ("AMU", "MED1", "MED2", "MED3", "SURG1", "SURG2", "ORTHO", "CCU", "ELDER")
_IMAGING = (
    ("XR", "XR Chest", "Lungs clear. Heart size normal. No pleural effusion."),
    ("XR", "XR Wrist", "No acute fracture or dislocation seen."),
    ("XR", "XR Hip", "No fracture identified. Mild degenerative change."),
    ("CT", "CT Head", "No intracranial haemorrhage, mass effect or acute infarct."),
    ("CT", "CT Abdomen and Pelvis", "No free gas or collection. Normal appendix not seen."),
    ("MR", "MR Lumbar Spine", "Degenerative disc disease L4/5 without nerve root compression."),
    ("MR", "MR Knee", "Degenerate medial meniscus. No ligament tear."),
)
_STROKE_REPORT = "Acute infarct in the {side} middle cerebral artery territory. No haemorrhage."
_COMMUNITY_TEAMS = ("District nursing", "Community physiotherapy", "Community matron")
_MH_TEAMS = ("Community mental health team", "Steps2Wellbeing talking therapies")
_VCS_SERVICES = (
    "Social prescribing link worker",
    "Befriending service",
    "Carers support",
    "Healthy lifestyle programme",
    "Money and benefits advice",
)


def _lab_values(rng: random.Random, person: Person, panel: str, when: date) -> tuple[float, ...]:
    """Analyte values consistent with the person's conditions and baseline HbA1c."""
    has = person.conditions
    ckd = "CKD" in has and has["CKD"] <= when
    tests = codes.LAB_PANELS[panel][1]
    values: list[float] = []
    for test in tests:
        mid = (test.low + test.high) / 2
        code = test.code.code
        if code == "59261-8":
            v = rng.gauss(person.hba1c, 4)
        elif code == "33914-3":
            v = rng.uniform(30, 59) if ckd else rng.uniform(60, 110)
        elif code == "14682-9":
            v = rng.gauss(150, 25) if ckd else rng.gauss(80 if person.male else 65, 12)
        elif code == "718-7":
            v = rng.gauss(145 if person.male else 132, 12)
        elif code == "14647-2":
            v = rng.gauss(5.0, 0.9)
        elif code == "14646-4":
            v = rng.gauss(1.4, 0.3)
        elif code == "22748-8":
            v = rng.gauss(2.9, 0.8)
        elif code == "14927-8":
            v = rng.gauss(1.5, 0.6)
        else:
            v = rng.gauss(mid, (test.high - test.low) / 5)
        values.append(round(max(v, 0.1), test.decimals))
    return tuple(values)


def generate_care(person: Person, census: Census, seed: int) -> Care:
    """Generate the person's care over the window (consistent with their conditions)."""
    rng = person_rng(seed, person.index, STREAM_EVENTS)
    care = Care()
    start = max(census.start, person.birth_date)
    end = person.death_date or census.end
    days = (end - start).days
    if days <= 0:
        return care
    years = days / 365.25
    age = person.age_on(start + timedelta(days=days // 2))
    n_cond = len(person.conditions)
    geo = area_geography()[person.address.lsoa]
    home_site = geo.nearest_site
    practice = person.practice

    # GP consultations, with reviews of long-term conditions.
    base = 5.0 if age < 5 else 2.0 if age < 16 else 3.0 if age < 45 else 4.0 if age < 65 else 6.0
    if not person.male and 16 <= age < 65:
        base *= 1.4
    for _ in range(_poisson(rng, (base + 1.2 * n_cond) * years)):
        when = _moment(rng, start, days, (8, 18))
        review = None
        active = [g for g, d in person.conditions.items() if d <= when.date()]
        if active and rng.random() < 0.35:
            review = rng.choice(active)
        bp = None
        if review in ("HYP", "CHD", "DM", "CKD", "STIA", "HF") or (
            age >= 40 and rng.random() < 0.1
        ):
            bp = (round(rng.gauss(person.systolic, 8)), round(rng.gauss(person.diastolic, 6)))
        bmi = (
            round(person.bmi + rng.gauss(0, 0.6), 1)
            if review == "DM" or rng.random() < 0.05
            else None
        )
        care.gp.append(GpConsultation(when, review, bp, bmi))

    # GP-requested pathology: reviews of long-term conditions, plus ad-hoc tests.
    if age >= 18:
        chronic = {"HYP", "DM", "CKD", "CHD", "STIA", "HF"} & person.conditions.keys()
        n_reviews = _poisson(rng, (1.0 if chronic else 0.3) * years)
        for _ in range(n_reviews):
            when = _moment(rng, start, days, (8, 13))
            for panel in ("UE", "FBC", "LIPID") if chronic else (rng.choice(("FBC", "UE")),):
                care.labs.append(_lab(rng, person, home_site, panel, when, practice))
        if "DM" in person.conditions:
            for _ in range(_poisson(rng, 2.0 * years)):
                when = _moment(rng, start, days, (8, 13))
                care.labs.append(_lab(rng, person, home_site, "HBA1C", when, practice))

    # A&E attendances and emergency admissions.
    ae_rate = (
        0.45 if age < 5 else 0.2 if age < 16 else 0.25 if age < 65 else 0.35 if age < 80 else 0.7
    )
    ae_rate *= (1 + 0.15 * n_cond) * (1.4, 1.2, 1.0, 0.9, 0.8)[person.imd_quintile - 1]
    admit_p = 0.12 if age < 65 else 0.3 if age < 80 else 0.45
    for _ in range(_poisson(rng, ae_rate * years)):
        arrival = _moment(rng, start, days, (0, 24))
        site = home_site
        admission = None
        if rng.random() < admit_p:
            admission = _admission(rng, person, site, arrival, age, end)
            care.admissions.append(admission)
            departure = admission.wards[0][1]
        else:
            departure = arrival + timedelta(minutes=rng.randint(60, 420))
        care.ae.append(AeAttendance(site, arrival, departure, admission))
        if rng.random() < 0.35:
            modality, proc, report = _IMAGING[rng.randrange(3)]
            care.imaging.append(_imaging(rng, site, modality, proc, report, arrival, "ED"))
        if admission is not None:
            for panel in ("FBC", "UE"):
                care.labs.append(
                    _lab(rng, person, site, panel, arrival + timedelta(minutes=30), "ward:ED")
                )

    # Stroke admission when the stroke happened inside the window.
    onset = person.conditions.get("STIA")
    if person.stroke and onset is not None and start <= onset < end:
        site = STROKE_SITES[0] if home_site == 0 else STROKE_SITES[1]
        arrival = datetime.combine(onset, time(rng.randrange(24), rng.randrange(60)))
        admission = _admission(rng, person, site, arrival, age, end, stroke=True)
        care.admissions.append(admission)
        care.ae.append(AeAttendance(site, arrival, admission.wards[0][1], admission))
        scan = admission.stroke.scan if admission.stroke else arrival
        side = rng.choice(("left", "right"))
        report = _STROKE_REPORT.format(side=side)
        care.imaging.append(Imaging(site, "CT", "CT Head", arrival, scan, report, "ED"))

    # Deaths in hospital: about four in ten deaths follow an emergency admission.
    if person.death_date is not None and rng.random() < 0.4:
        arrival = datetime.combine(
            person.death_date - timedelta(days=rng.randint(1, 12)), time(rng.randrange(24), 0)
        )
        if arrival.date() >= start:
            admission = _admission(rng, person, home_site, arrival, age, None)
            admission.discharged = datetime.combine(person.death_date, time(rng.randrange(24), 0))
            admission.died = True
            admission.pathway = 0
            care.admissions.append(admission)
            care.ae.append(AeAttendance(home_site, arrival, admission.wards[0][1], admission))

    # Outpatient referrals with RTT clocks.
    for _ in range(_poisson(rng, (0.15 + 0.05 * n_cond) * years)):
        clock_start = start + timedelta(days=rng.randrange(days))
        if age < 16:
            specialty = "420"
        else:
            choices = ["100", "101", "110", "120", "130", "330", "340"]
            if not person.male:
                choices += ["502", "502"]
            if {"CHD", "AF", "HF"} & person.conditions.keys():
                choices += ["320", "320", "320"]
            if age >= 60:
                choices += ["130", "110"]
            specialty = rng.choice(choices)
        wait = int(rng.expovariate(1 / 70)) + 7
        first = datetime.combine(
            clock_start + timedelta(days=min(wait, 120)), time(rng.randrange(9, 17), 0)
        )
        stop_days = wait + int(rng.expovariate(1 / 60))
        stop = clock_start + timedelta(days=stop_days)
        site = home_site if rng.random() < 0.8 else rng.randrange(3)
        seen = first if first.date() < end else None
        care.rtt.append(
            RttPathway(site, specialty, clock_start, seen, stop if stop < end else None, practice)
        )
        if seen and specialty in ("110", "100", "340") and rng.random() < 0.3:
            modality, proc, report = _IMAGING[rng.choice((5, 6, 0, 4))]
            care.imaging.append(_imaging(rng, site, modality, proc, report, first, "OPD"))

    # Dorset HealthCare: community services for frail people, mental health services.
    if person.frailty in ("moderate", "severe"):
        team = rng.choice(_COMMUNITY_TEAMS)
        per_year = 6 if person.frailty == "moderate" else 18
        for _ in range(_poisson(rng, per_year * years)):
            care.community.append(
                CommunityContact(_moment(rng, start, days, (8, 18)), team, "community")
            )
    mh = "MH" in person.conditions
    dep = "DEP" in person.conditions
    if mh or (dep and rng.random() < 0.25):
        team = _MH_TEAMS[0] if mh else _MH_TEAMS[1]
        for _ in range(_poisson(rng, (4 if mh else 1.5) * years)):
            care.community.append(
                CommunityContact(_moment(rng, start, days, (9, 17)), team, "mental-health")
            )
    crisis_rate = 0.12 if mh else 0.01 if dep else 0.0
    for _ in range(_poisson(rng, crisis_rate * years)):
        care.community.append(
            CommunityContact(_moment(rng, start, days, (0, 24)), "Crisis team", "crisis-referral")
        )

    # Council social care: after supported discharges, and for frailty, dementia and LD.
    for adm in care.admissions:
        if adm.pathway >= 1 and not adm.died:
            care.social.append(_social_after_discharge(rng, adm, end))
    needs = (
        person.frailty in ("moderate", "severe")
        or ("DEM" in person.conditions)
        or ("LD" in person.conditions and age >= 18)
    )
    if needs and rng.random() < 0.35 * min(years, 5) / 5:
        assessed = start + timedelta(days=rng.randrange(days))
        agreed = rng.random() < 0.7
        package = rng.choice(("Home care", "Day services", "Direct payment")) if agreed else None
        care.social.append(
            SocialCare(
                assessed,
                "Care Act needs assessment",
                "Eligible needs" if agreed else "No eligible needs",
                package,
                assessed + timedelta(days=rng.randint(7, 40)) if agreed else None,
                None,
                round(rng.uniform(3, 21), 1) if agreed else 0.0,
            )
        )

    # Voluntary sector and social prescribing.
    vcs_rate = 0.01 + (0.04 if dep else 0) + (0.04 if person.frailty else 0) + 0.01 * n_cond
    if age >= 18:
        for _ in range(_poisson(rng, vcs_rate * years)):
            care.vcs.append(
                VcsReferral(
                    start + timedelta(days=rng.randrange(days)), rng.choice(_VCS_SERVICES), practice
                )
            )
    return care


def _lab(
    rng: random.Random, person: Person, site: int, panel: str, when: datetime, requester: str
) -> LabOrder:
    reported = when + timedelta(hours=rng.randint(2, 30))
    return LabOrder(
        site, panel, when, reported, requester, _lab_values(rng, person, panel, when.date())
    )


def _imaging(
    rng: random.Random,
    site: int,
    modality: str,
    procedure: str,
    report: str,
    ordered: datetime,
    requester: str,
) -> Imaging:
    performed = ordered + timedelta(minutes=rng.randint(20, 240))
    return Imaging(site, modality, procedure, ordered, performed, report, requester)


def _admission(
    rng: random.Random,
    person: Person,
    site: int,
    arrival: datetime,
    age: int,
    end: date | None,
    stroke: bool = False,
) -> Admission:
    ward_time = arrival + timedelta(minutes=rng.randint(90, 600))
    los_days = rng.expovariate(1 / (3 if age < 65 else 7 if age < 80 else 10))
    if stroke:
        los_days = rng.expovariate(1 / 14) + 2
    discharged = ward_time + timedelta(hours=max(6, int(los_days * 24)))
    wards: list[tuple[str, datetime]] = []
    times = None
    if stroke:
        scan = arrival + timedelta(minutes=int(rng.expovariate(1 / 45)) + 5)
        lysed = scan + timedelta(minutes=rng.randint(10, 60)) if rng.random() < 0.11 else None
        unit = arrival + timedelta(minutes=int(rng.expovariate(1 / 240)) + 30)
        times = StrokeTimes(arrival, scan, lysed, unit)
        wards.append(("STROKE", unit))
        diagnosis = codes.STROKE_INFARCT_ICD
    else:
        diagnosis = rng.choice(codes.ADMISSION_DIAGNOSES)
        wards.append(("AMU", ward_time))
        moves = rng.randint(0, 2) if los_days > 1 else 0
        t = ward_time
        for _ in range(moves):
            t = t + timedelta(hours=rng.randint(6, max(7, int(los_days * 24 / (moves + 1)))))
            if t < discharged:
                wards.append((rng.choice(_WARDS[1:]), t))
    procedure = codes.PROCEDURES.get(diagnosis.code)
    if end is not None and discharged.date() >= end:
        discharged = datetime.combine(end, time(0, 0)) - timedelta(minutes=1)
    frail = {"severe": 3, "moderate": 2, "mild": 1}.get(person.frailty, 0)
    cut = rng.random()
    if age < 65 and not frail:
        pathway = 0 if cut < 0.97 else 1
    else:
        p0 = 0.75 - 0.12 * frail
        pathway = (
            0 if cut < p0 else 1 if cut < p0 + 0.15 else 2 if cut < p0 + 0.21 + 0.02 * frail else 3
        )
    return Admission(site, arrival, discharged, wards, diagnosis, procedure, pathway, stroke=times)


def _social_after_discharge(rng: random.Random, adm: Admission, end: date) -> SocialCare:
    assessed = adm.discharged.date() + timedelta(days=rng.randint(0, 3))
    package = {1: "Reablement at home", 2: "Bedded intermediate care", 3: "Residential care"}[
        adm.pathway
    ]
    stop = assessed + timedelta(days=rng.randint(14, 42)) if adm.pathway < 3 else None
    return SocialCare(
        assessed,
        f"Discharge to assess (pathway {adm.pathway})",
        "Eligible needs",
        package,
        assessed,
        stop if stop is not None and stop < end else None,
        round(rng.uniform(5, 20), 1) if adm.pathway == 1 else 0.0,
    )
