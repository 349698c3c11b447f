"""Scoring the master patient index against Synthetic Dorset's ground truth.

A Synthetic Dorset run (``sharedcare synth``, see docs/explanation/synthetic-dorset.md)
holds each organisation's own view of each person and ``truth.csv``, which names the true
person behind every source record. This module

* reads every organisation's person records back out of a run directory
  (:func:`read_events`): GP and Dorset HealthCare FHIR Patients, the acute trusts' HL7 v2
  PID segments (parsed with :mod:`sharedcare.ingest.hl7v2`), and the councils' and the
  voluntary sector's CSV rows, in the order they would arrive;
* feeds them through a :class:`~sharedcare.identity.matcher.Matcher` one at a time, the
  real-time path (:func:`run_matcher`);
* scores the resulting clusters against the truth (:func:`score_clusters`): pairwise and
  cluster precision and recall, and what landed in the review band.

Arrival order: GP and community (FHIR) registrations first, in file order, as the initial
load of an index; then the timed events (HL7 messages by message time, council and
voluntary-sector rows by their dates) interleaved by time. A later event for a record
already seen updates it, and only when its demographics changed.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import orjson

from sharedcare.identity.matcher import Matcher
from sharedcare.identity.nhs_number import NHS_NUMBER_SYSTEM
from sharedcare.identity.person import PersonDataError, PersonRecord

__all__ = [
    "EvaluationError",
    "MatchRun",
    "Scores",
    "SourceEvent",
    "f1_of",
    "matcher_clusters",
    "matcher_reviews",
    "read_events",
    "read_truth",
    "run_matcher",
    "score_clusters",
    "snapshot",
]

RecordKey = tuple[str, str]

_TRUST_STREAMS = ("adt", "oru-path", "orm-rad", "oru-rad")


class EvaluationError(ValueError):
    """A run directory cannot be read; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One arrival at the index.

    Attributes:
        when: Sort key for arrival order (ISO-like text; ``""`` for the initial load).
        record: The person record as the source sent it, or ``None`` for a merge.
        merge: ``(kept, retired)`` record keys when the source merged two of its own
            records (HL7 ADT^A40).
    """

    when: str
    record: PersonRecord | None
    merge: tuple[RecordKey, RecordKey] | None = None


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _files(folder: Path, stem: str, ext: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(stem) and f".{ext}" in p.name)


def _fhir_events(folder: Path) -> Iterator[SourceEvent]:
    org = folder.name
    for path in _files(folder, "patients-", "ndjson"):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    bundle = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise EvaluationError(f"{path}: line {line_no} is not JSON") from None
                for entry in bundle.get("entry", ()):
                    resource = entry.get("resource", {})
                    if resource.get("resourceType") == "Patient":
                        try:
                            yield SourceEvent("", PersonRecord.from_fhir(resource, source=org))
                        except PersonDataError as err:
                            raise EvaluationError(f"{path}: line {line_no}: {err}") from None


def _hl7_events(folder: Path) -> Iterator[SourceEvent]:
    # Imported here: identity does not otherwise depend on ingest.
    from sharedcare.ingest.hl7v2.errors import Hl7ParseError, MappingError
    from sharedcare.ingest.hl7v2.mapping.context import MappingContext
    from sharedcare.ingest.hl7v2.mapping.patient import map_patient
    from sharedcare.ingest.hl7v2.parse import parse_message
    from sharedcare.synthetic.feeds.hl7v2 import iter_messages

    org = folder.name
    # Most messages repeat the PID of an earlier one: parse each distinct PID once.
    cache: dict[str, PersonRecord | None] = {}
    for stream in _TRUST_STREAMS:
        for path in _files(folder, f"{stream}-", "hl7"):
            for number, text in enumerate(iter_messages(path), 1):
                msh = _segment(text, "MSH|", at_start=True)
                pid = _segment(text, "PID|")
                mrg = _segment(text, "MRG|")
                if pid is None or msh is None:
                    continue
                when = msh.split("|")[6] if msh.count("|") >= 6 else ""
                if pid not in cache or mrg is not None:
                    try:
                        parsed = parse_message("\r".join(x for x in (msh, pid, mrg) if x))
                        ctx = MappingContext(parsed)
                        map_patient(ctx)
                    except (Hl7ParseError, MappingError) as err:
                        raise EvaluationError(
                            f"{path}: message {number}: {err}; regenerate the run"
                        ) from None
                    patient = next(
                        r for r in ctx.resources.values() if r["resourceType"] == "Patient"
                    )
                    local = [i for i in patient["identifier"] if i["system"] != NHS_NUMBER_SYSTEM]
                    try:
                        cache[pid] = (
                            PersonRecord.from_fhir(
                                patient, source=org, local_id=str(local[0]["value"])
                            )
                            if local
                            else None
                        )
                    except PersonDataError as err:
                        raise EvaluationError(f"{path}: message {number}: {err}") from None
                    merged = parsed.first("MRG")
                    record = cache[pid]
                    if record is not None and merged is not None and merged.v(1):
                        yield SourceEvent(when, record)
                        yield SourceEvent(when, None, (record.key, (org, merged.v(1))))
                        continue
                record = cache[pid]
                if record is not None:
                    yield SourceEvent(when, record)


def _segment(text: str, head: str, *, at_start: bool = False) -> str | None:
    """The first segment starting ``head`` (segments end in CR), without splitting them all."""
    if at_start:
        start = 0 if text.startswith(head) else -1
    else:
        found = text.find("\r" + head)
        start = found + 1 if found >= 0 else -1
    if start < 0:
        return None
    end = text.find("\r", start)
    return text[start:] if end < 0 else text[start:end]


def _csv_events(folder: Path, stem: str, id_column: str, date_column: str) -> Iterator[SourceEvent]:
    org = folder.name
    for path in _files(folder, f"{stem}-", "csv"):
        with _open_text(path) as handle:
            for row in csv.DictReader(handle):
                try:
                    line = ", ".join(x for x in (row.get("address_line"), row.get("town")) if x)
                    record = PersonRecord.create(
                        org,
                        row[id_column],
                        given_name=row.get("given_name"),
                        family_name=row.get("family_name"),
                        birth_date=row.get("date_of_birth") or None,
                        postcode=row.get("postcode"),
                        address=line or None,
                        nhs_number=row.get("nhs_number") or None,
                    )
                except (PersonDataError, KeyError) as err:
                    raise EvaluationError(f"{path}: a row is unreadable ({err})") from None
                yield SourceEvent(row.get(date_column) or "", record)


def read_events(directory: Path) -> list[SourceEvent]:
    """Every person record in a Synthetic Dorset run, in arrival order.

    Raises:
        EvaluationError: If the directory is not a synth run or a file cannot be read.
    """
    if not (directory / "truth.csv").is_file():
        raise EvaluationError(f"{directory} has no truth.csv; point at a `sharedcare synth` run")
    initial: list[SourceEvent] = []
    timed: list[SourceEvent] = []
    folders = sorted(p for p in directory.iterdir() if p.is_dir())
    for folder in folders:  # GP practices first, then the rest of the FHIR senders
        names = {p.name.split("-", 1)[0] for p in folder.iterdir()}
        if "patients" in names:
            initial.extend(_fhir_events(folder))
        if "adt" in names:
            timed.extend(_hl7_events(folder))
        if "assessments" in names:
            timed.extend(_csv_events(folder, "assessments", "council_person_id", "assessment_date"))
        if "packages" in names:
            timed.extend(_csv_events(folder, "packages", "council_person_id", "start_date"))
        if "referrals" in names:
            timed.extend(_csv_events(folder, "referrals", "referral_id", "received_date"))
    initial.sort(key=lambda e: 0 if e.record and e.record.source.startswith("J") else 1)
    timed.sort(key=lambda e: _sortable(e.when))
    return initial + timed


def _sortable(when: str) -> str:
    """HL7 ``YYYYMMDDHHMM`` and ISO ``YYYY-MM-DD`` on one scale."""
    return when.replace("-", "").replace("T", "").replace(":", "")[:14].ljust(14, "0")


def _fill(new: PersonRecord, old: PersonRecord) -> PersonRecord:
    """Keep what an older version held where the newer one is silent (e.g. CSV extracts)."""
    return replace(
        new,
        given_names=new.given_names or old.given_names,
        family_name=new.family_name or old.family_name,
        birth_date=new.birth_date or old.birth_date,
        sex=new.sex or old.sex,
        postcode=new.postcode or old.postcode,
        address=(new.address or old.address)
        if new.postcode in (None, old.postcode)
        else new.address,
        nhs_number=new.nhs_number or old.nhs_number,
    )


def snapshot(events: Iterable[SourceEvent]) -> dict[RecordKey, PersonRecord]:
    """The last version of each source record (first-seen order), as a batch linker sees."""
    out: dict[RecordKey, PersonRecord] = {}
    for event in events:
        if event.record is not None:
            held = out.get(event.record.key)
            out[event.record.key] = event.record if held is None else _fill(event.record, held)
    return out


@dataclass(slots=True)
class MatchRun:
    """What feeding events through a matcher did."""

    matcher: Matcher
    adds: int = 0
    updates: int = 0
    unchanged: int = 0
    merges_applied: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def run_matcher(
    events: Iterable[SourceEvent],
    matcher: Matcher | None = None,
    *,
    honour_merges: bool = True,
    timer: Any = None,
) -> MatchRun:
    """Feed events one at a time through ``matcher`` (a default one when omitted).

    Args:
        events: Arrivals, in order.
        matcher: The index to feed.
        honour_merges: Apply a source's own merge (ADT^A40) by merging the two golden
            records, as an ingest service would.
        timer: A ``perf_counter``-like callable; when given, each add is timed.
    """
    matcher = Matcher() if matcher is None else matcher  # an empty Matcher is falsy
    run = MatchRun(matcher)
    held: dict[RecordKey, PersonRecord] = {}
    for event in events:
        if event.record is not None:
            record = event.record
            previous = held.get(record.key)
            if previous is not None:
                record = _fill(record, previous)
                if record == previous:
                    run.unchanged += 1
                    continue
                run.updates += 1
            else:
                run.adds += 1
            held[record.key] = record
            if timer is not None:
                start = timer()
                matcher.add(record)
                run.latencies_ms.append((timer() - start) * 1000)
            else:
                matcher.add(record)
        elif event.merge is not None and honour_merges:
            kept, retired = event.merge
            if kept in held and retired in held:
                a = matcher.resolve(matcher.golden_id_of(kept))
                b = matcher.resolve(matcher.golden_id_of(retired))
                if a != b:
                    matcher.merge(a, b)
                    run.merges_applied += 1
    return run


def read_truth(directory: Path) -> dict[RecordKey, str]:
    """``(source_org, source_id)`` → true person id, from a run's ``truth.csv``."""
    truth: dict[RecordKey, str] = {}
    with _open_text(directory / "truth.csv") as handle:
        for row in csv.DictReader(handle):
            if row.get("record_type") in ("patient", "referral"):
                truth[(row["source_org"], row["source_id"])] = row["person_id"]
    return truth


@dataclass(slots=True)
class Scores:
    """Accuracy of a clustering against the truth.

    Pairwise figures count record pairs placed together; cluster precision is the share
    of predicted clusters holding one person only, cluster recall the share of people
    whose records all sit in one cluster.
    """

    records: int
    people: int
    clusters: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    pure_clusters: int
    whole_people: int
    exact_clusters: int
    missing_records: int = 0
    review_pairs: int = 0
    review_true: int = 0

    @property
    def precision(self) -> float:
        """Pairwise precision."""
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        """Pairwise recall."""
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        """Pairwise F1."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def cluster_precision(self) -> float:
        """Share of predicted clusters that hold one person only."""
        return self.pure_clusters / self.clusters if self.clusters else 1.0

    @property
    def cluster_recall(self) -> float:
        """Share of people whose records all sit in one cluster."""
        return self.whole_people / self.people if self.people else 1.0

    def summary(self) -> dict[str, float | int]:
        """Figures for printing."""
        return {
            "records": self.records,
            "people": self.people,
            "clusters": self.clusters,
            "pairwise_precision": round(self.precision, 5),
            "pairwise_recall": round(self.recall, 5),
            "pairwise_f1": round(self.f1, 5),
            "cluster_precision": round(self.cluster_precision, 5),
            "cluster_recall": round(self.cluster_recall, 5),
            "true_pairs": self.true_pairs,
            "predicted_pairs": self.predicted_pairs,
            "review_pairs": self.review_pairs,
            "review_true_matches": self.review_true,
            "missing_records": self.missing_records,
        }


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def score_clusters(
    clusters: Mapping[RecordKey, str],
    truth: Mapping[RecordKey, str],
    review: Iterable[tuple[RecordKey, Iterable[RecordKey]]] = (),
) -> Scores:
    """Score a clustering (record → cluster id) against the truth (record → person).

    Records missing from ``clusters`` count as singletons (and in ``missing_records``);
    records not in the truth are ignored.

    Args:
        clusters: Predicted cluster per record.
        truth: True person per record.
        review: Review-band pairs: a record and the members of the golden record it was
            paired with; it is a true match when any member is the same person.
    """
    missing = 0
    assigned: dict[RecordKey, str] = {}
    for key in truth:
        cluster = clusters.get(key)
        if cluster is None:
            missing += 1
            cluster = f"\x00missing:{key[0]}:{key[1]}"
        assigned[key] = cluster
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for key, cluster in assigned.items():
        by_cluster[cluster].append(truth[key])
    by_person: dict[str, set[str]] = defaultdict(set)
    person_sizes: Counter[str] = Counter(truth.values())
    cells: Counter[tuple[str, str]] = Counter()
    for key, cluster in assigned.items():
        by_person[truth[key]].add(cluster)
        cells[(cluster, truth[key])] += 1
    pure = sum(1 for people in by_cluster.values() if len(set(people)) == 1)
    exact = sum(
        1
        for people in by_cluster.values()
        if len(set(people)) == 1 and len(people) == person_sizes[people[0]]
    )
    review_pairs = review_true = 0
    for key, members in review:
        review_pairs += 1
        person = truth.get(key)
        if person is not None and any(truth.get(m) == person for m in members):
            review_true += 1
    return Scores(
        records=len(assigned),
        people=len(person_sizes),
        clusters=len(by_cluster),
        true_pairs=sum(_pairs(n) for n in person_sizes.values()),
        predicted_pairs=sum(_pairs(len(v)) for v in by_cluster.values()),
        correct_pairs=sum(_pairs(n) for n in cells.values()),
        pure_clusters=pure,
        whole_people=sum(1 for c in by_person.values() if len(c) == 1),
        exact_clusters=exact,
        missing_records=missing,
        review_pairs=review_pairs,
        review_true=review_true,
    )


def matcher_clusters(matcher: Matcher, keys: Iterable[RecordKey]) -> dict[RecordKey, str]:
    """The active golden id of each indexed record among ``keys``."""
    out: dict[RecordKey, str] = {}
    for key in keys:
        try:
            out[key] = matcher.resolve(matcher.golden_id_of(key))
        except LookupError:
            continue
    return out


def matcher_reviews(matcher: Matcher) -> list[tuple[RecordKey, list[RecordKey]]]:
    """Open possible-match reviews as (record, members of the candidate golden record)."""
    out = []
    for item in matcher.reviews():
        if item.kind.value != "possible-match":
            continue
        members = matcher.members(matcher.resolve(item.candidate_golden_id))
        out.append((item.record, members))
    return out


def f1_of(precision: float, recall: float) -> float:
    """Harmonic mean, 0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
