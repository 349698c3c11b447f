"""Link two CSV files of person records: which left rows are the same person as which right.

Used by ``sharedcare identity link-files``. Both files are read through a field map
(match field to column on each side), blocked with :mod:`~sharedcare.identity.blocking`,
scored with the Fellegi–Sunter model and written as ``left_id,right_id,
match_probability,match_weight`` for every pair at or above the threshold (the model's
auto-link weight by default). Pairs that agree on a valid NHS number and date of birth
link deterministically whatever their weight.

Optionally (``one_to_one``) each record keeps only its best partner, for files that hold
each person once.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import threading
import time
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sharedcare.identity import nhs_number
from sharedcare.identity.blocking import blocking_keys
from sharedcare.identity.compare import COMPARISONS, Features, compare, features
from sharedcare.identity.model import MatchModel, TermFrequencies, probability_from_weight
from sharedcare.identity.person import MATCH_FIELDS, PersonDataError, PersonRecord

__all__ = [
    "LinkError",
    "LinkResult",
    "LinkSummary",
    "LinkedPair",
    "estimate_prior_from",
    "link_files",
    "link_records",
    "parse_field_map",
    "read_records",
    "write_pairs",
]


_KEEP_EVIDENCE = 0.0
"""Pairs with less evidence than this (bits, before the prior) are never kept."""


DEFAULT_MARGIN = 10.0
"""Default for ``margin`` in :func:`link_records` (bits)."""


class LinkError(ValueError):
    """The inputs cannot be linked; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class LinkedPair:
    """A left record linked to a right record."""

    left_id: str
    right_id: str
    match_probability: float
    match_weight: float
    deterministic: bool = False


@dataclass(slots=True)
class LinkResult:
    """Linked pairs and how they were found.

    Attributes:
        pairs: Linked pairs, deterministic first, then by weight.
        compared: Candidate pairs scored.
        prior: Prior used (estimated from the files unless switched off).
        timings: Seconds per phase (``prepare``, ``score``).
    """

    pairs: list[LinkedPair]
    compared: int
    prior: float
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class LinkSummary:
    """What a link-files run did."""

    left_records: int
    right_records: int
    compared_pairs: int
    linked_pairs: int
    prior: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


_MIN_PER_WORKER = 20_000
"""Fewer left records than this per worker are scored in this process."""


@dataclass(slots=True)
class _Shared:
    """State the scoring workers read (inherited over fork, never pickled)."""

    left: Sequence[PersonRecord]
    right_features: list[Features]
    buckets: dict[str, list[int]]
    valid_nhs: list[bool]
    tf: TermFrequencies
    model: MatchModel
    max_bucket: int


_SHARED: _Shared | None = None
_SHARED_LOCK = threading.Lock()


def _score_slice(start: int, stop: int) -> tuple[list[tuple[int, int, float, bool, bool]], bytes]:
    """Score the candidate pairs of left records ``start:stop`` (evidence without prior)."""
    shared = _SHARED
    if shared is None:
        raise RuntimeError("link scoring state is missing; call link_records")
    model = shared.model
    rf, buckets, valid_nhs = shared.right_features, shared.buckets, shared.valid_nhs
    w_nhs, w_given, w_family, w_dob, w_sex, w_address = model.weight_table()
    tf_given_on = "given_name" in model.tf_fields
    tf_family_on = "family_name" in model.tf_fields
    given_index = COMPARISONS.index("given_name")
    family_index = COMPARISONS.index("family_name")
    max_bucket = shared.max_bucket
    found: list[tuple[int, int, float, bool, bool]] = []
    evidence_all = array("d")
    for i in range(start, stop):
        a = features(shared.left[i])
        candidates: set[int] = set()
        for key in blocking_keys(a):
            bucket = buckets.get(key)
            if bucket is not None and len(bucket) <= max_bucket:
                candidates.update(bucket)
        if not candidates:
            continue
        a_valid = bool(a.nhs) and nhs_number.is_valid(a.nhs)
        given_adj = (
            model.tf_adjustment(given_index, shared.tf.frequency("given_name", a.given))
            if tf_given_on
            else 0.0
        )
        family_adj = (
            model.tf_adjustment(family_index, shared.tf.frequency("family_name", a.family))
            if tf_family_on
            else 0.0
        )
        for j in candidates:
            v = compare(a, rf[j])
            evidence = (
                w_nhs[v[0]] + w_given[v[1]] + w_family[v[2]] + w_dob[v[3]] + w_sex[v[4]]
            ) + w_address[v[5]]
            if v[1] == 1:
                evidence += given_adj
            if v[2] == 1:
                evidence += family_adj
            evidence_all.append(evidence)
            det = a_valid and v[0] == 1 and v[3] == 1 and valid_nhs[j]
            if evidence > _KEEP_EVIDENCE or det:
                found.append((i, j, evidence, det, model.capped(v)))
    return found, evidence_all.tobytes()


def parse_field_map(specs: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Parse ``FIELD=LEFTCOL:RIGHTCOL`` options into ``{field: (left, right)}``.

    Raises:
        LinkError: If a spec is malformed, names an unknown field or repeats one.
    """
    out: dict[str, tuple[str, str]] = {}
    for spec in specs:
        name, sep, columns = spec.partition("=")
        left, sep2, right = columns.partition(":")
        name = name.strip()
        if not sep or not sep2 or not name or not left.strip() or not right.strip():
            raise LinkError(f"--map {spec!r} must look like FIELD=LEFTCOL:RIGHTCOL")
        if name not in MATCH_FIELDS:
            raise LinkError(
                f"--map field {name!r} is unknown; use one of {', '.join(MATCH_FIELDS)}"
            )
        if name in out:
            raise LinkError(f"--map field {name!r} is given twice; give each field once")
        out[name] = (left.strip(), right.strip())
    if not out:
        raise LinkError("give at least one --map FIELD=LEFTCOL:RIGHTCOL")
    return out


def read_records(
    path: Path, *, id_column: str, columns: Mapping[str, str], source: str
) -> list[PersonRecord]:
    """Read a CSV file into person records.

    Raises:
        LinkError: If the file is missing, lacks a named column, repeats an id, or a
            row has an unreadable value (the message gives the line and column, not the
            value).
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError:
        raise LinkError(f"cannot open {path}; check the path") from None
    records: list[PersonRecord] = []
    with handle:
        try:
            _read_rows(handle, path.name, id_column, columns, source, records)
        except UnicodeDecodeError:
            raise LinkError(f"{path.name} is not UTF-8 text; save it as UTF-8 CSV") from None
        except csv.Error:
            raise LinkError(f"{path.name} is not a readable CSV file; check its format") from None
    return records


def _read_rows(
    handle: TextIO,
    name: str,
    id_column: str,
    columns: Mapping[str, str],
    source: str,
    records: list[PersonRecord],
) -> None:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    for column in (id_column, *columns.values()):
        if column not in header:
            raise LinkError(f"{name} has no column {column!r}; check --map and the id")
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        try:
            record = PersonRecord.from_row(
                row, source=source, id_column=id_column, field_map=columns
            )
        except PersonDataError as err:
            raise LinkError(f"{name} line {line}: {err}") from None
        if record.local_id in seen:
            raise LinkError(f"{name} line {line}: id in {id_column!r} is repeated")
        seen.add(record.local_id)
        records.append(record)


def _tf_counts(feats: Iterable[Features]) -> TermFrequencies:
    tf = TermFrequencies(("given_name", "family_name"))
    for f in feats:
        tf.add("given_name", f.given)
        tf.add("family_name", f.family)
    return tf


def link_records(
    left: Sequence[PersonRecord],
    right: Sequence[PersonRecord],
    model: MatchModel | None = None,
    *,
    threshold: float | None = None,
    one_to_one: bool = False,
    margin: float | None = DEFAULT_MARGIN,
    estimate_prior: bool = True,
    max_bucket: int = 2000,
    workers: int | None = None,
) -> LinkResult:
    """Score candidate pairs between two record lists and keep the linked ones.

    Args:
        left: Left records.
        right: Right records.
        model: Match model; the checked-in default when omitted.
        threshold: Lowest match weight kept; the model's auto-link weight by default.
        one_to_one: Keep only each record's best partner.
        margin: Drop a pair whose weight is more than this many bits below the best
            pair of either of its records (a sibling or twin scoring far below the
            person's own record); ``None`` keeps every pair over the threshold.
        estimate_prior: Estimate the prior from these files
            (:func:`estimate_prior_from`) instead of using the model's.
        max_bucket: Skip blocking keys shared by more than this many right records.
        workers: Processes to score in (forked; each takes a slice of the left
            records); the number of CPUs by default. Small inputs use one.

    Returns:
        The linked pairs with the number compared, the prior used and timings.
    """
    model = model or MatchModel.default()
    cut = model.auto_link_weight if threshold is None else threshold
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    rf = [features(r) for r in right]
    tf = _tf_counts(rf)
    buckets: dict[str, list[int]] = {}
    for j, f in enumerate(rf):
        for key in blocking_keys(f):
            buckets.setdefault(key, []).append(j)
    valid_nhs = [bool(f.nhs) and nhs_number.is_valid(f.nhs) for f in rf]
    timings["prepare"] = time.perf_counter() - clock
    clock = time.perf_counter()
    global _SHARED
    with _SHARED_LOCK:  # one run at a time may publish its state to the workers
        _SHARED = _Shared(left, rf, buckets, valid_nhs, tf, model, max_bucket)
        try:
            wanted = workers if workers is not None else (os.cpu_count() or 1)
            n_workers = max(1, min(wanted, len(left) // _MIN_PER_WORKER))
            if n_workers == 1:
                parts = [_score_slice(0, len(left))]
            else:
                step = -(-len(left) // n_workers)
                bounds = [(k, min(k + step, len(left))) for k in range(0, len(left), step)]
                context = multiprocessing.get_context("fork")
                with context.Pool(n_workers) as pool:
                    parts = pool.starmap(_score_slice, bounds)
        finally:
            _SHARED = None
    found: list[tuple[int, int, float, bool, bool]] = []
    evidence_all = array("d")
    for part_found, part_evidence in parts:
        found.extend(part_found)
        evidence_all.frombytes(part_evidence)
    compared = len(evidence_all)
    prior = model.prior
    if estimate_prior and left and right:
        prior = estimate_prior_from(evidence_all, len(left), len(right), model.prior)
    prior_weight = math.log2(prior / (1.0 - prior))
    review_allowed = cut < model.auto_link_weight
    best_left: dict[int, float] = {}
    best_right: dict[int, float] = {}
    for i, j, evidence, _, _ in found:
        if evidence > best_left.get(i, -math.inf):
            best_left[i] = evidence
        if evidence > best_right.get(j, -math.inf):
            best_right[j] = evidence
    pairs: list[LinkedPair] = []
    for i, j, evidence, det, capped in found:
        weight = evidence + prior_weight
        if not det:
            if weight < cut or (capped and not review_allowed):
                continue
            if margin is not None and (
                evidence < best_left[i] - margin or evidence < best_right[j] - margin
            ):
                continue
        pairs.append(
            LinkedPair(
                left[i].local_id, right[j].local_id, probability_from_weight(weight), weight, det
            )
        )
    pairs.sort(key=lambda p: (not p.deterministic, -p.match_weight, p.left_id, p.right_id))
    if one_to_one:
        used_left: set[str] = set()
        used_right: set[str] = set()
        kept = []
        for pair in pairs:
            if pair.left_id in used_left or pair.right_id in used_right:
                continue
            used_left.add(pair.left_id)
            used_right.add(pair.right_id)
            kept.append(pair)
        pairs = kept
    timings["score"] = time.perf_counter() - clock
    return LinkResult(pairs, compared, prior, timings)


def estimate_prior_from(
    evidence: Sequence[float], n_left: int, n_right: int, start: float
) -> float:
    """Estimate the prior (share of all pairs that match) from scored candidate pairs.

    EM on the prior alone, with m and u held fixed: each candidate pair's posterior
    match probability under the current prior is summed to an expected number of
    matches, divided by all possible pairs, and repeated until it settles. Pairs that
    were never compared (not blocked together) are taken as non-matches, so blocking
    must find nearly all matches for the estimate to hold. The estimate is kept
    between one match in all pairs and one match per record of the smaller file.

    Args:
        evidence: Match weight of each compared pair without the prior (bits).
        n_left: Number of left records.
        n_right: Number of right records.
        start: Starting prior.
    """
    total_pairs = max(1, n_left * n_right)
    upper = min(0.5, 1.0 / max(1, n_left, n_right))
    lower = min(upper, 1.0 / max(2, total_pairs))
    prior = min(max(start, lower), upper)
    for _ in range(50):
        logit = math.log2(prior / (1.0 - prior))
        expected = 0.0
        for e in evidence:
            w = e + logit
            if w > -30:
                expected += 1.0 / (1.0 + 2.0 ** (-w)) if w < 60 else 1.0
        new = min(max(expected / total_pairs, lower), upper)
        if abs(new - prior) <= 1e-4 * prior:
            return new
        prior = new
    return prior


def write_pairs(path: Path, pairs: Iterable[LinkedPair]) -> None:
    """Write pairs as ``left_id,right_id,match_probability,match_weight``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["left_id", "right_id", "match_probability", "match_weight"])
        for p in pairs:
            writer.writerow(
                [p.left_id, p.right_id, f"{p.match_probability:.6f}", f"{p.match_weight:.3f}"]
            )


def link_files(
    left_path: Path,
    right_path: Path,
    *,
    left_id: str,
    right_id: str,
    field_map: Mapping[str, tuple[str, str]],
    out: Path,
    model: MatchModel | None = None,
    threshold: float | None = None,
    one_to_one: bool = False,
) -> LinkSummary:
    """Link two CSV files and write the pairs CSV.

    Raises:
        LinkError: If an input cannot be read (see :func:`read_records`).
    """
    start = time.perf_counter()
    left = read_records(
        left_path, id_column=left_id, columns={k: v[0] for k, v in field_map.items()}, source="left"
    )
    right = read_records(
        right_path,
        id_column=right_id,
        columns={k: v[1] for k, v in field_map.items()},
        source="right",
    )
    read_seconds = time.perf_counter() - start
    result = link_records(left, right, model, threshold=threshold, one_to_one=one_to_one)
    clock = time.perf_counter()
    try:
        write_pairs(out, result.pairs)
    except OSError:
        raise LinkError(f"cannot write {out}; check the folder exists and is writable") from None
    timings = {"read": read_seconds, **result.timings, "write": time.perf_counter() - clock}
    return LinkSummary(
        len(left),
        len(right),
        result.compared,
        len(result.pairs),
        result.prior,
        time.perf_counter() - start,
        timings,
    )
