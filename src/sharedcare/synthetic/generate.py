"""Run the generator: people in chunks, each chunk streamed to its own files.

Output layout (``DIR`` is the ``--out`` directory)::

    DIR/<org-code>/<kind>-<chunk>.<ext>   one file per organisation, kind and chunk
    DIR/truth.csv                         every source record → true person (never ingest this)
    DIR/manifest.json                     counts per organisation and type, run settings

A chunk's content depends only on the seed, the run size and the chunk size, never on how many
worker processes ran, so a run is reproducible for a given seed.
"""

from __future__ import annotations

import csv
import gzip
import io
import multiprocessing
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import orjson

from sharedcare import reference
from sharedcare.synthetic.events import generate_care
from sharedcare.synthetic.feeds import acute, social
from sharedcare.synthetic.feeds.fhir import DHC_CODE, dhc_bundle, gp_bundle
from sharedcare.synthetic.feeds.hl7v2 import MESSAGE_SEPARATOR, MessageBuilder
from sharedcare.synthetic.geography import ACUTE_SITES
from sharedcare.synthetic.model import population_model
from sharedcare.synthetic.people import (
    STREAM_QUALITY,
    Census,
    decedent_count,
    generate_person,
    nhs_test_range_suffixes,
    person_rng,
)
from sharedcare.synthetic.quality import DataQuality, OrgRecord, local_id, org_records

TRUTH_COLUMNS = ("source_org", "record_type", "source_id", "person_id", "faults")
DEFAULT_END = date(2025, 12, 31)
DEFAULT_CHUNK = 1000
TRUSTS = ("RBD", "R0D")
MAX_PEOPLE = 850_000
_ID_FORMATS: dict[str, tuple[str, int]] = {
    "RBD": ("D", 101),
    "R0D": ("U", 202),
    DHC_CODE: ("RIO", 303),
    reference.LAD_DORSET: ("DC", 404),
    reference.LAD_BCP: ("BCP", 505),
    social.VCS_CODE: ("VCS", 606),
}


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """Settings for one run."""

    people: int
    seed: int
    out: Path
    end: date = DEFAULT_END
    years: int = 5
    chunk_size: int = DEFAULT_CHUNK
    compress: bool = False
    """Write each file gzip-compressed (``.gz``), for big runs on slow disks."""
    workers: int = 1
    quality: DataQuality = field(default_factory=DataQuality)

    def __post_init__(self) -> None:
        if not 1 <= self.people <= MAX_PEOPLE:
            raise ValueError(
                f"people must be between 1 and {MAX_PEOPLE:,} (the 999 NHS number test range "
                "must also hold everyone who dies in the window)"
            )
        if not 1 <= self.years <= 20:
            raise ValueError("years must be between 1 and 20")
        if self.chunk_size < 1:
            raise ValueError("chunk size must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")

    @property
    def census(self) -> Census:
        """The run's time window: ``years`` years ending on ``end``."""
        return Census(date(self.end.year - self.years, self.end.month, self.end.day), self.end)


@dataclass(slots=True)
class ChunkResult:
    """What one chunk produced."""

    index: int
    people: int
    truth: str
    counts: Counter[tuple[str, str]]


def _practice_names() -> dict[str, str]:
    return {p.code: p.name.title() for p in reference.gp_practices()}


class _ChunkWriter:
    """Buffers one chunk's output per (organisation, kind) and writes it at the end."""

    def __init__(self, out: Path, chunk: int, compress: bool) -> None:
        self.out = out
        self.chunk = chunk
        self.compress = compress
        self.hl7: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        self.lines: dict[tuple[str, str, str], list[bytes]] = {}
        self.csv_rows: dict[tuple[str, str], tuple[tuple[str, ...], list[tuple[str, ...]]]] = {}

    def message(self, org: str, kind: str, moment: datetime, text: str) -> None:
        self.hl7.setdefault((org, kind), []).append((moment, text))

    def ndjson(self, org: str, kind: str, line: bytes) -> None:
        self.lines.setdefault((org, kind, "ndjson"), []).append(line)

    def rows(
        self, org: str, kind: str, header: tuple[str, ...], rows: list[tuple[str, ...]]
    ) -> None:
        if rows:
            self.csv_rows.setdefault((org, kind), (header, []))[1].extend(rows)

    def flush(self) -> None:
        for (org, kind), messages in self.hl7.items():
            messages.sort(key=lambda m: m[0])
            text = "".join(t + MESSAGE_SEPARATOR for _, t in messages)
            self._write(org, kind, "hl7", text.encode("utf-8"))
        for (org, kind, ext), lines in self.lines.items():
            self._write(org, kind, ext, b"\n".join(lines) + b"\n")
        for (org, kind), (header, rows) in self.csv_rows.items():
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
            self._write(org, kind, "csv", buffer.getvalue().encode("utf-8"))

    def _write(self, org: str, kind: str, ext: str, data: bytes) -> None:
        folder = self.out / org
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{kind}-{self.chunk:05d}.{ext}"
        if not self.compress:
            (folder / name).write_bytes(data)
            return
        # mtime=0 and no file name in the header keep compressed output byte-identical.
        with (
            (folder / f"{name}.gz").open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0) as handle,
        ):
            handle.write(data)


def _id_maker(org: str, index: int) -> Callable[[bool], str]:
    """Local-id factory for person ``index`` at ``org`` (GP practices prefix their ODS code)."""
    prefix, salt = _ID_FORMATS.get(org, (org, 707))
    return lambda duplicate: local_id(prefix, salt, index, duplicate)


def generate_chunk(config: SynthConfig, chunk: int) -> ChunkResult:
    """Generate and write people ``chunk * chunk_size`` up to the next chunk (or the end)."""
    model = population_model()
    census = config.census
    total = config.people + decedent_count(model, config.people, census)
    first = chunk * config.chunk_size
    last = min(first + config.chunk_size, total)
    dq = config.quality
    names = _practice_names()
    writer = _ChunkWriter(config.out, chunk, config.compress)
    builders = {t: MessageBuilder(t, chunk) for t in TRUSTS}
    window_end = datetime.combine(census.end, time(0, 0))
    truth = io.StringIO()
    truth_csv = csv.writer(truth, lineterminator="\n")
    counts: Counter[tuple[str, str]] = Counter()

    def records(org: str, person_index: int, rng_q: random.Random) -> list[OrgRecord]:
        recs = org_records(person, rng_q, dq, _id_maker(org, person_index))
        for r in recs:
            truth_csv.writerow((org, "patient", r.local_id, person.person_id, ";".join(r.faults)))
        return recs

    for index in range(first, last):
        person = generate_person(model, config.seed, index, config.people, census)
        care = generate_care(person, census, config.seed)
        rng_q = person_rng(config.seed, index, STREAM_QUALITY)
        counts[("population", "person")] += 1
        if person.death_date is not None:
            counts[("population", "death")] += 1
        if person.birth_date > census.start:
            counts[("population", "birth")] += 1
        counts[("population", "house-move")] += len(person.addresses) - 1

        # GP practice: one bundle per patient (per registration, for duplicates).
        for rec in records(person.practice, index, rng_q):
            bundle = gp_bundle(
                person, rec, care, person.practice, names[person.practice], rng_q, census.end
            )
            writer.ndjson(person.practice, "patients", bundle.dumps())
            counts[(person.practice, "Bundle")] += 1
            for rtype, n in bundle.counts.items():
                counts[(person.practice, rtype)] += n

        # Acute trusts.
        sites = care.acute_sites()
        for trust in TRUSTS:
            if not any(ACUTE_SITES[s].trust_code == trust for s in sites):
                continue
            recs = records(trust, index, rng_q)
            feed = acute.acute_feed(
                person, care, trust, recs, rng_q, dq, builders[trust], window_end
            )
            for moment, kind, stream, text in feed.messages:
                writer.message(trust, stream, moment, text)
                counts[(trust, kind)] += 1
            writer.rows(trust, "ssnap", acute.SSNAP_COLUMNS, feed.ssnap)
            writer.rows(trust, "rtt", acute.RTT_COLUMNS, feed.rtt)
            counts[(trust, "ssnap")] += len(feed.ssnap)
            counts[(trust, "rtt")] += len(feed.rtt)

        # Dorset HealthCare.
        if care.community:
            for rec in records(DHC_CODE, index, rng_q):
                bundle = dhc_bundle(person, rec, care, rng_q)
                writer.ndjson(DHC_CODE, "patients", bundle.dumps())
                counts[(DHC_CODE, "Bundle")] += 1
                for rtype, n in bundle.counts.items():
                    counts[(DHC_CODE, rtype)] += n

        # Council of the person's current address.
        if care.social:
            council = person.lad_code
            rec = records(council, index, rng_q)[0]
            assessments, packages = social.council_rows(rec, care, rng_q, dq)
            writer.rows(council, "assessments", social.ASSESSMENT_COLUMNS, assessments)
            writer.rows(council, "packages", social.PACKAGE_COLUMNS, packages)
            counts[(council, "assessment")] += len(assessments)
            counts[(council, "package")] += len(packages)

        if care.vcs:
            rec = org_records(person, rng_q, dq, _id_maker(social.VCS_CODE, index))[0]
            rows = social.vcs_rows(rec, care, rng_q, dq)
            writer.rows(social.VCS_CODE, "referrals", social.VCS_COLUMNS, rows)
            counts[(social.VCS_CODE, "referral")] += len(rows)
            for row in rows:
                truth_csv.writerow(
                    (social.VCS_CODE, "referral", row[0], person.person_id, ";".join(rec.faults))
                )
    writer.flush()
    return ChunkResult(chunk, last - first, truth.getvalue(), counts)


def chunk_count(config: SynthConfig) -> int:
    """Number of chunks in the run (survivors plus people who die in the window)."""
    total = config.people + decedent_count(population_model(), config.people, config.census)
    return (total + config.chunk_size - 1) // config.chunk_size


def _work(args: tuple[SynthConfig, int]) -> ChunkResult:
    return generate_chunk(*args)


def _results(config: SynthConfig) -> Iterator[ChunkResult]:
    chunks = [(config, i) for i in range(chunk_count(config))]
    if config.workers == 1 or len(chunks) == 1:
        for item in chunks:
            yield _work(item)
        return
    population_model()  # build the lookups once before forking so workers inherit them
    nhs_test_range_suffixes()
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(config.workers) as pool:
        yield from pool.imap(_work, chunks)


def run(
    config: SynthConfig, progress: Callable[[int, int], None] | None = None
) -> dict[str, object]:
    """Generate the whole population into ``config.out`` and return the manifest.

    Args:
        config: The run settings.
        progress: Called after each chunk with (people done, people in total).

    Returns:
        The manifest that was written to ``manifest.json``.
    """
    config.out.mkdir(parents=True, exist_ok=True)
    model = population_model()
    total = config.people + decedent_count(model, config.people, config.census)
    counts: Counter[tuple[str, str]] = Counter()
    done = 0
    if progress is not None:
        progress(0, total)
    with (config.out / "truth.csv").open("w", encoding="utf-8", newline="") as truth:
        truth.write(",".join(TRUTH_COLUMNS) + "\n")
        for result in _results(config):
            truth.write(result.truth)
            counts.update(result.counts)
            done += result.people
            if progress is not None:
                progress(done, total)
    organisations: dict[str, dict[str, int]] = {}
    for (org, kind), n in sorted(counts.items()):
        if n:
            organisations.setdefault(org, {})[kind] = n
    quality = asdict(config.quality)
    manifest: dict[str, object] = {
        "generator": "sharedcare.synthetic",
        "seed": config.seed,
        "people_at_census": config.people,
        "people_total": total,
        "window": {"start": config.census.start.isoformat(), "end": config.census.end.isoformat()},
        "chunk_size": config.chunk_size,
        "compressed": config.compress,
        "data_quality": quality,
        "organisations": organisations,
    }
    (config.out / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return manifest
