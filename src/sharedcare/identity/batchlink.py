"""Batch linking of many person records at once, on every core.

:func:`link_records` places records in clusters exactly as adding them one at a time, in
the given order, to a fresh :class:`~sharedcare.identity.matcher.Matcher` would (same
blocking, deterministic step, scores, term-frequency adjustment, bands and tie-breaks),
but splits the expensive part, comparing each record with its candidates, across worker
processes:

1. **Features** of every record (:func:`~sharedcare.identity.compare.features`), in this
   process (forked workers took twice the CPU for it: pickling the features back and
   copying the pages of every record they read).
2. **Blocking.** Every record's blocking keys go into one inverted index. A record's
   candidates are the records *before it* in a shared bucket, as the real-time path would
   see them, and a bucket that had grown past ``max_bucket`` by then is skipped, as there.
3. **Term frequencies** of names as they stood when each record arrived (one pass).
4. **Scoring** (parallel, read-only): each worker takes chunks of records and, for each,
   either lists the candidates that agree on a valid NHS number and date of birth (the
   deterministic step) or compares it with every candidate and returns the match weights.
   Workers are forked, so they share the features and the index without pickling them.
5. **Placing** (one pass, in order, in this process): the cluster of each candidate is
   known by then, so each record joins the best cluster, goes to review, or starts a new
   golden record, by the matcher's rules. Chunks are consumed in order as they arrive, so
   this overlaps with the scoring.

Only step 5 depends on earlier decisions, and it reads nothing but the workers' weights,
so the clusters are the same whatever the number of workers (a test checks 1 against 2).
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sharedcare.identity import nhs_number
from sharedcare.identity.blocking import RULES, rule_key
from sharedcare.identity.compare import COMPARISONS, Features, compare, features
from sharedcare.identity.matcher import DecisionKind, ReviewKind
from sharedcare.identity.model import Band, MatchModel
from sharedcare.identity.person import PersonRecord

__all__ = ["KINDS", "BatchError", "BatchLink", "BatchReview", "link_records"]

RecordKey = tuple[str, str]

_CHUNK = 10_000

KINDS: tuple[tuple[DecisionKind, Band], ...] = (
    (DecisionKind.NEW, Band.NO_LINK),
    (DecisionKind.NEW, Band.REVIEW),
    (DecisionKind.DETERMINISTIC, Band.AUTO_LINK),
    (DecisionKind.PROBABILISTIC, Band.AUTO_LINK),
)
"""Decision kind and band by the code kept in :attr:`BatchLink.kinds`."""
_LEVEL_BITS = 4  # every field has fewer than 16 levels


class BatchError(ValueError):
    """The records cannot be linked as given; the message says why."""


@dataclass(frozen=True, slots=True)
class BatchReview:
    """A pair queued for clerical review by a batch run (record indexes into the input)."""

    kind: ReviewKind
    record: int
    golden: int
    candidate_golden: int
    match_weight: float


@dataclass(slots=True)
class BatchLink:
    """The outcome of :func:`link_records`.

    Attributes:
        keys: ``(source, local_id)`` of each input record, in input order.
        cluster: Index into ``golden_ids`` of each record's golden record.
        golden_ids: Golden id of each cluster, in order of creation.
        deterministic: Records placed by the deterministic step.
        probabilistic: Records auto-linked by the probabilistic step.
        reviews: Pairs sent to clerical review.
        compared: Candidate pairs scored.
        seconds: Wall time of each step (features, blocking, scoring and placing).
        workers: Worker processes used (1: all in this process).
        kinds: How each record was placed, one byte per record: see :data:`KINDS`.
    """

    keys: list[RecordKey]
    cluster: array[int]
    golden_ids: list[str]
    deterministic: int = 0
    probabilistic: int = 0
    reviews: list[BatchReview] = field(default_factory=list)
    compared: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    workers: int = 1
    kinds: bytearray = field(default_factory=bytearray)

    def kind(self, index: int) -> tuple[DecisionKind, Band]:
        """How record ``index`` was placed, as the matcher's decision kind and band."""
        return KINDS[self.kinds[index]]

    def clusters(self) -> dict[RecordKey, str]:
        """Golden id of each record."""
        ids = self.golden_ids
        return {key: ids[c] for key, c in zip(self.keys, self.cluster, strict=True)}


# -- worker side ------------------------------------------------------------------------------
# Set in the parent just before forking the workers; read-only in the workers.
_SHARED: dict[str, Any] = {}


def _init_worker() -> None:
    gc.disable()  # the workers make no cyclic garbage; skip the collector's sweeps


def _features_and_keys(
    records: Sequence[PersonRecord], rules: list[str]
) -> Iterator[tuple[Features, list[str | None]]]:
    for r in records:
        f = features(r)
        yield f, [rule_key(rule, f) for rule in rules]


Result = tuple[bytes, "array[int]", "array[int]", "array[float]", "array[int]"]


def _score_chunk(bounds: tuple[int, int]) -> Result:
    """Candidates of records ``bounds`` and, unless deterministic, their match weights.

    Returns per record a flag (1 = the candidates listed are the deterministic ones) and
    offsets into flat arrays of candidate indexes, weights and packed comparison vectors,
    each in the order the matcher would visit them.
    """
    feats: list[Features] = _SHARED["features"]
    slots: list[tuple[list[int], ...]] = _SHARED["slots"]
    nhs_buckets: list[list[int] | None] = _SHARED["nhs"]
    adjust: list[tuple[int, array[float]]] = _SHARED["adjust"]
    model: MatchModel = _SHARED["model"]
    max_bucket: int = _SHARED["max_bucket"]
    w0, w1, w2, w3, w4, w5 = model.weight_table()
    prior = model.prior_weight
    lo, hi = bounds
    flags = bytearray(hi - lo)
    offsets = array("q", [0])
    handles: array[int] = array("q")
    weights: array[float] = array("d")
    codes: array[int] = array("q")
    for i in range(lo, hi):
        handle = i + 1
        f = feats[handle]
        found: set[int] | None = None
        if f.nhs and f.dob:
            # The deterministic step: an earlier record with this NHS number and birth date.
            nb = nhs_buckets[i]
            before = bisect_left(nb, handle) if nb is not None else max_bucket + 1
            if nb is not None and before <= max_bucket:
                # Every earlier record with this number is in its (usable) bucket.
                det = [h for h in nb[:before] if feats[h].dob == f.dob]
            else:  # no usable NHS bucket: look through every candidate, as the matcher does
                found = _candidates(slots[i], handle, max_bucket)
                det = [h for h in found if feats[h].nhs == f.nhs and feats[h].dob == f.dob]
            if det and nhs_number.is_valid(f.nhs):
                flags[i - lo] = 1
                handles.extend(det)
                weights.extend([0.0] * len(det))  # keep the arrays aligned
                codes.extend([0] * len(det))
                offsets.append(len(handles))
                continue
        if found is None:
            found = _candidates(slots[i], handle, max_bucket)
        adjustments = [(index, values[i]) for index, values in adjust if values[i]]
        for h in found:
            v = compare(f, feats[h])
            # model.weight, unrolled: the same terms added in the same order.
            w = prior + w0[v[0]] + w1[v[1]] + w2[v[2]] + w3[v[3]] + w4[v[4]] + w5[v[5]]
            for field_index, adjustment in adjustments:
                if v[field_index] == 1:
                    w += adjustment
            handles.append(h)
            weights.append(w)
            codes.append((((((v[0] << 4 | v[1]) << 4 | v[2]) << 4 | v[3]) << 4 | v[4]) << 4) | v[5])
        offsets.append(len(handles))
    return bytes(flags), offsets, handles, weights, codes


def _candidates(buckets: tuple[list[int], ...], handle: int, max_bucket: int) -> set[int]:
    """The matcher's candidates of a record: earlier records in its usable buckets."""
    found: set[int] = set()
    for bucket in buckets:
        before = bisect_left(bucket, handle)  # the bucket as it stood when the record arrived
        if before and before <= max_bucket:
            found.update(bucket[:before])
    return found


def _unpack(code: int, width: int) -> tuple[int, ...]:
    mask = (1 << _LEVEL_BITS) - 1
    levels = [(code >> (_LEVEL_BITS * (width - 1 - k))) & mask for k in range(width)]
    return tuple(levels)


# -- parent side ------------------------------------------------------------------------------


class _RandomIds:
    """Random (version 4) UUIDs as text, like ``str(uuid.uuid4())``.

    The randomness comes from the operating system in bulk rather than once per id.
    """

    __slots__ = ("_next", "_raw")

    def __init__(self) -> None:
        self._raw = b""
        self._next = 0

    def __call__(self) -> str:
        if self._next >= len(self._raw):
            self._raw, self._next = os.urandom(16 * 4096), 0
        b = bytearray(self._raw[self._next : self._next + 16])
        self._next += 16
        b[6] = (b[6] & 0x0F) | 0x40  # version 4
        b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _frequencies(feats: Sequence[Features], model: MatchModel) -> list[tuple[int, array[float]]]:
    """Per tf field, each record's value's relative frequency among the records before it.

    Returns ``(field index, frequencies)`` in ``model.tf_fields`` order, with NaN where
    fewer than 1,000 values had been counted (the matcher's
    :class:`~sharedcare.identity.model.TermFrequencies` then gives no adjustment).
    """
    out: list[tuple[int, array[float]]] = []
    for name in model.tf_fields:
        attr = {"given_name": "given", "family_name": "family"}[name]
        counts: dict[str, int] = {}
        total = 0
        freq: array[float] = array("d")
        for f in feats:
            value = getattr(f, attr)
            freq.append(counts.get(value, 0) / total if total >= 1000 else math.nan)
            if value:
                counts[value] = counts.get(value, 0) + 1
                total += 1
        out.append((COMPARISONS.index(name), freq))
    return out


def _adjustments(
    model: MatchModel, frequencies: list[tuple[int, array[float]]]
) -> list[tuple[int, array[float]]]:
    """Each record's term-frequency adjustment per tf field (0 where there is none)."""
    out = []
    for index, freq in frequencies:
        adjust = model.tf_adjustment
        out.append((index, array("d", [0.0 if x != x else adjust(index, x) for x in freq])))
    return out


def _map(
    pool: Any, func: Callable[[tuple[int, int]], Any], jobs: list[tuple[int, int]]
) -> Iterator[Any]:
    if pool is None:
        return map(func, jobs)
    return iter(pool.imap(func, jobs))


@contextmanager
def _pool(workers: int) -> Iterator[Any]:
    """Forked workers (sharing this process's memory), or ``None`` to work in-process."""
    if workers <= 1:
        yield None
        return
    with multiprocessing.get_context("fork").Pool(workers, _init_worker) as pool:
        yield pool


def link_records(
    records: Sequence[PersonRecord],
    model: MatchModel | None = None,
    *,
    workers: int = 0,
    max_bucket: int = 2000,
    id_factory: Callable[[], str] | None = None,
    rules: Sequence[str] | None = None,
    chunk: int = _CHUNK,
) -> BatchLink:
    """Link ``records`` in one batch, as the real-time matcher would in this order.

    Args:
        records: Source records; each ``(source, local_id)`` at most once.
        model: Match model; the checked-in default when omitted.
        workers: Worker processes; 0 means one per CPU, 1 works in this process.
        max_bucket: Blocking buckets larger than this are skipped (as in the matcher).
        id_factory: Makes golden ids; random UUIDs by default.
        rules: Blocking rule names; all by default.
        chunk: Records per unit of work handed to a worker.

    Raises:
        BatchError: If a record key appears twice.
    """
    if workers < 0 or chunk < 1:
        raise BatchError("workers must be 0 (one per CPU) or more, and chunk at least 1")
    rule_names = [r.name for r in RULES] if rules is None else list(rules)
    unknown = set(rule_names) - {r.name for r in RULES}
    if unknown:
        raise BatchError(
            f"unknown blocking rule {sorted(unknown)[0]!r}; use nhs, dob, names, place or fdob"
        )
    model = model or MatchModel.default()
    make_id = id_factory or _RandomIds()
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        raise BatchError("a (source, local id) appears twice; link the latest version of each")
    n = len(records)
    workers = workers or os.cpu_count() or 1
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 1  # the workers share the index by forking
    workers = min(workers, max(1, n // chunk))
    jobs = _chunks(n, chunk)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    try:
        # Steps 1 and 2. Records are known by handle i + 1, as the matcher numbers them,
        # so that candidate sets iterate (and weight ties break) in the matcher's order.
        feats: list[Features] = []
        buckets: dict[str, list[int]] = {}
        slots: list[tuple[list[int], ...]] = []
        nhs: list[list[int] | None] = []
        nhs_rule = rule_names.index("nhs") if "nhs" in rule_names else -1
        # In this process: in forked workers it took twice the CPU (pickling the features
        # back, and copying the pages of every record read) for no gain in wall time.
        for i, (f, record_keys) in enumerate(_features_and_keys(records, rule_names)):
            feats.append(f)
            held = []
            for key in record_keys:
                if key is None:
                    continue
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = []
                bucket.append(i + 1)
                held.append(bucket)
            slots.append(tuple(held))
            key = record_keys[nhs_rule] if nhs_rule >= 0 else None
            nhs.append(buckets[key] if key is not None else None)
        del buckets
        seconds["features and blocking"] = time.perf_counter() - started
        # Step 3.
        frequencies = _frequencies(feats, model)
        _SHARED.update(
            features=[feats[0], *feats] if feats else [],  # by handle
            slots=slots,
            nhs=nhs,
            model=model,
            max_bucket=max_bucket,
            adjust=_adjustments(model, frequencies),
        )
        del feats
        seconds["term frequencies"] = time.perf_counter() - started - sum(seconds.values())
        # Steps 4 and 5.
        with _pool(workers) as pool:
            out = _place_all(keys, _map(pool, _score_chunk, jobs), model, frequencies, make_id)
        seconds["scoring and placing"] = time.perf_counter() - started - sum(seconds.values())
        out.seconds = seconds
        out.workers = workers
        return out
    finally:
        _SHARED.clear()


def _place_all(
    keys: list[RecordKey],
    results: Iterator[Result],
    model: MatchModel,
    frequencies: list[tuple[int, array[float]]],
    make_id: Callable[[], str],
) -> BatchLink:
    """Step 5: place each record in order from the workers' candidates and weights."""
    by_handle: array[int] = array("q", [-1])  # cluster of each record, by handle
    golden_ids: list[str] = []
    known: set[str] = set()
    out = BatchLink(keys, array("q"), golden_ids)
    kinds = out.kinds
    auto = model.auto_link_weight
    width = len(model.fields)

    def new_golden() -> int:
        while True:  # never hand out an id twice
            golden_id = make_id()
            if golden_id not in known:
                known.add(golden_id)
                golden_ids.append(golden_id)
                return len(golden_ids) - 1

    i = 0
    for flags, offsets, handles, weights, codes in results:
        for k, flag in enumerate(flags):
            lo, hi = offsets[k], offsets[k + 1]
            if flag:
                # Deterministic: the candidate in the oldest golden record (clusters are
                # numbered in order of creation, as the matcher orders its goldens).
                by_handle.append(min(by_handle[h] for h in handles[lo:hi]))
                kinds.append(2)
                out.deterministic += 1
                i += 1
                continue
            best: dict[int, tuple[float, int]] = {}
            for j in range(lo, hi):
                g = by_handle[handles[j]]
                held = best.get(g)
                if held is None or weights[j] > held[0]:
                    best[g] = (weights[j], j)
            out.compared += hi - lo
            if not best:
                by_handle.append(new_golden())
                kinds.append(0)
                i += 1
                continue
            ranked = sorted(best.items(), key=lambda kv: kv[1][0], reverse=True)
            top, (_, j) = ranked[0]
            vector = _unpack(codes[j], width)
            tf_values: list[float | None] = []
            for index, freq in frequencies:
                x = freq[i]
                tf_values.append(x if vector[index] == 1 and x == x else None)
            band = model.band_of(vector, tf_values)
            if band is Band.AUTO_LINK:
                by_handle.append(top)
                kinds.append(3)
                out.probabilistic += 1
                for other, (other_weight, _) in ranked[1:]:
                    if other_weight >= auto:
                        out.reviews.append(
                            BatchReview(ReviewKind.POSSIBLE_DUPLICATE, i, top, other, other_weight)
                        )
                        break
            else:
                g = new_golden()
                by_handle.append(g)
                kinds.append(1 if band is Band.REVIEW else 0)
                if band is Band.REVIEW:
                    weight = weights[j]
                    out.reviews.append(BatchReview(ReviewKind.POSSIBLE_MATCH, i, g, top, weight))
            i += 1
    out.cluster = by_handle[1:]
    return out
