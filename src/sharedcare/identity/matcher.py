"""Real-time matching: an in-memory, incremental master patient index.

Each source record added to a :class:`Matcher` is matched as it arrives and placed in a
cluster, identified by a stable golden-record id:

1. **Deterministic step.** A valid NHS number plus the same date of birth on a record in
   the index links to that record's cluster.
2. **Probabilistic step.** Otherwise candidates sharing a blocking key
   (:mod:`~sharedcare.identity.blocking`) are scored with the Fellegi–Sunter model
   (:mod:`~sharedcare.identity.model`, with term-frequency adjustment for names). The
   best-scoring cluster decides the band: *auto-link* joins it; *review* creates a new
   golden record and queues a :class:`ReviewItem`; *no-link* creates a new golden record.

Golden ids are never reused or renumbered. A merge keeps one id and marks the other
``replaced_by`` it; :meth:`Matcher.unmerge` restores the retired id. Every decision is a
:class:`LinkDecision` holding the match weight and per-field evidence.

Persistence is the caller's job: the matcher is pure in-memory state.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from sharedcare.identity import nhs_number
from sharedcare.identity.blocking import BlockingIndex
from sharedcare.identity.compare import Features, compare, features
from sharedcare.identity.model import Band, MatchModel, Score, TermFrequencies
from sharedcare.identity.person import PersonRecord
from sharedcare.identity.survivorship import GoldenRecord, SurvivorshipPolicy, survive

__all__ = [
    "DecisionKind",
    "LinkDecision",
    "MatchError",
    "Matcher",
    "MergeEvent",
    "ReviewItem",
    "ReviewKind",
]

RecordKey = tuple[str, str]


class MatchError(LookupError):
    """An operation named a record, golden record, review or merge that does not exist."""


class DecisionKind(StrEnum):
    """How a record came to be in its cluster."""

    DETERMINISTIC = "deterministic"
    PROBABILISTIC = "probabilistic"
    NEW = "new"
    MANUAL = "manual"


class ReviewKind(StrEnum):
    """Why a pair needs a person to look at it."""

    POSSIBLE_MATCH = "possible-match"
    POSSIBLE_DUPLICATE = "possible-duplicate"


@dataclass(frozen=True, slots=True)
class LinkDecision:
    """Why a source record sits in its cluster.

    Attributes:
        record: ``(source, local_id)`` of the record placed.
        golden_id: The cluster it was placed in.
        kind: Deterministic, probabilistic, new cluster, or manual.
        band: Band of the best candidate (``no-link`` when there was none).
        score: Score against the best candidate record, with per-field evidence.
        matched_record: The best candidate record, if any.
        candidates: How many candidate records were scored.
        sequence: Order of the decision within this matcher.
    """

    record: RecordKey
    golden_id: str
    kind: DecisionKind
    band: Band
    score: Score | None
    matched_record: RecordKey | None
    candidates: int
    sequence: int


@dataclass(slots=True)
class ReviewItem:
    """A pair of golden records for clerical review."""

    id: int
    kind: ReviewKind
    record: RecordKey
    golden_id: str
    candidate_golden_id: str
    score: Score
    resolved: bool = False
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class MergeEvent:
    """A merge of ``retired`` into ``kept``, remembering which records moved."""

    id: int
    kept: str
    retired: str
    moved: tuple[RecordKey, ...]


@dataclass(slots=True)
class _Golden:
    id: str
    order: int
    # A list, not a set: almost every cluster holds one to three records, and an empty
    # set alone costs 216 bytes (this is held for every golden record in every process).
    members: list[int] = field(default_factory=list)
    replaced_by: str | None = None

    def drop(self, handle: int) -> None:
        """Remove ``handle`` from the members if it is one."""
        if handle in self.members:
            self.members.remove(handle)


@dataclass(slots=True)
class _Entry:
    record: PersonRecord
    features: Features
    golden_id: str


class Matcher:
    """The incremental index. Thread-safe: mutations hold an internal lock.

    Args:
        model: Match model; the checked-in default when omitted.
        policy: Survivorship policy for golden views.
        id_factory: Makes new golden ids; random UUIDs by default.
        max_bucket: Blocking buckets larger than this are skipped at lookup.
    """

    def __init__(
        self,
        model: MatchModel | None = None,
        *,
        policy: SurvivorshipPolicy | None = None,
        id_factory: Callable[[], str] | None = None,
        max_bucket: int = 2000,
    ) -> None:
        self.model = model or MatchModel.default()
        self.policy = policy or SurvivorshipPolicy()
        self._make_id = id_factory or (lambda: str(uuid.uuid4()))
        self._index = BlockingIndex(max_bucket=max_bucket)
        self._tf = TermFrequencies(self.model.tf_fields)
        self._entries: dict[int, _Entry] = {}
        self._handles: dict[RecordKey, int] = {}
        self._goldens: dict[str, _Golden] = {}
        self._decisions: dict[RecordKey, LinkDecision] = {}
        self._reviews: dict[int, ReviewItem] = {}
        self._review_log: list[ReviewItem] = []  # every item raised, in order
        self._merges: dict[int, MergeEvent] = {}
        self._counter = itertools.count(1)
        self._handle_counter = itertools.count(1)
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._entries)

    @property
    def golden_count(self) -> int:
        """Number of active (not retired, not empty) golden records."""
        return sum(1 for g in self._goldens.values() if g.replaced_by is None and g.members)

    def golden_id_of(self, key: RecordKey) -> str:
        """The golden id a source record currently belongs to."""
        return self._entry(key).golden_id

    def resolve(self, golden_id: str) -> str:
        """Follow ``replaced_by`` links from ``golden_id`` to the active golden id."""
        seen = set()
        current = self._golden(golden_id)
        while current.replaced_by is not None and current.id not in seen:
            seen.add(current.id)
            current = self._golden(current.replaced_by)
        return current.id

    def replaced_by(self, golden_id: str) -> str | None:
        """The golden id that ``golden_id`` was merged into, if it was."""
        return self._golden(golden_id).replaced_by

    def members(self, golden_id: str) -> list[RecordKey]:
        """Source records in a golden record (sorted)."""
        g = self._golden(golden_id)
        return sorted(self._entries[h].record.key for h in g.members)

    def decision(self, key: RecordKey) -> LinkDecision:
        """The latest decision about a source record."""
        try:
            return self._decisions[key]
        except KeyError:
            raise MatchError("no decision for that record; add it first") from None

    def reviews(self, *, open_only: bool = True) -> list[ReviewItem]:
        """Review items, oldest first."""
        return [r for r in self._reviews.values() if not (open_only and r.resolved)]

    def review_count(self) -> int:
        """How many review items were ever raised here (open or resolved)."""
        return len(self._review_log)

    def reviews_since(self, seen: int) -> list[ReviewItem]:
        """The review items raised after the first ``seen``, oldest first: what a
        placement added, without walking the whole queue (which grows with every review)."""
        return self._review_log[seen:]

    def golden(self, golden_id: str) -> GoldenRecord:
        """The survivorship view of a golden record (following merges)."""
        active = self._golden(self.resolve(golden_id))
        records = [self._entries[h].record for h in active.members]
        return survive(active.id, records, self.policy)

    # ------------------------------------------------------------- matching
    def add(self, record: PersonRecord) -> LinkDecision:
        """Match a source record and place it in a cluster.

        Adding a record whose ``(source, local_id)`` is already indexed updates it and
        re-evaluates its place (see :meth:`update`).
        """
        with self._lock:
            if record.key in self._handles:
                return self._update(record)
            feats = features(record)
            decision, review = self._place(record.key, feats, exclude=None, current=None)
            self._insert(record, feats, decision.golden_id)
            self._remember(decision, review)
            return decision

    def load(self, record: PersonRecord, golden_id: str) -> None:
        """Restore a record into a known cluster without matching (e.g. from storage).

        Args:
            record: The source record.
            golden_id: Its golden id as stored.

        Raises:
            MatchError: If the record is already indexed or the golden id was retired.
        """
        with self._lock:
            if record.key in self._handles:
                raise MatchError("record is already indexed; use update to change it")
            held = self._goldens.get(golden_id)
            if held is not None and held.replaced_by is not None:
                raise MatchError("golden id was merged away; load the record into its replacement")
            self._insert(record, features(record), golden_id)

    def load_retired(self, golden_id: str, replaced_by: str) -> None:
        """Restore a retired golden id (from storage) so that it still resolves.

        Raises:
            MatchError: If ``golden_id`` already has records.
        """
        with self._lock:
            golden = self._goldens.get(golden_id)
            if golden is None:
                golden = self._goldens[golden_id] = _Golden(golden_id, next(self._counter))
            if golden.members:
                raise MatchError("golden id still has records; merge it instead")
            golden.replaced_by = replaced_by

    def merges(self) -> list[MergeEvent]:
        """Merges that can still be undone, oldest first."""
        return list(self._merges.values())

    def refresh(self, record: PersonRecord) -> int | None:
        """Take a newer copy of an indexed record whose matching values are all unchanged.

        Nothing is scored and the record keeps its cluster: only the copy held (its
        ``updated`` time, which survivorship reads) is replaced. A record whose values
        differ in any field is left alone, for :meth:`add` to re-evaluate.

        Returns:
            The number of records in its cluster, or ``None`` if ``record`` is not indexed
            with exactly these values (nothing was changed).
        """
        with self._lock:
            handle = self._handles.get(record.key)
            if handle is None:
                return None
            entry = self._entries[handle]
            if entry.record != record:  # ``updated`` is not compared
                return None
            entry.record = record
            return len(self._goldens[entry.golden_id].members)

    def update(self, record: PersonRecord) -> LinkDecision:
        """Replace a source record's values and re-evaluate its cluster.

        The record stays in its cluster unless its new values no longer reach the review
        band against any other member; a record that alone formed a cluster and now
        auto-links elsewhere moves there, and its old golden id is marked replaced by the
        new one, so the id a caller holds still resolves.
        """
        with self._lock:
            if record.key not in self._handles:
                raise MatchError("record is not indexed; add it first")
            return self._update(record)

    def match(self, record: PersonRecord) -> LinkDecision:
        """Score a record against the index without changing anything (a dry run)."""
        with self._lock:
            feats = features(record)
            handle = self._handles.get(record.key)
            decision, _ = self._place(record.key, feats, exclude=handle, current=None, dry=True)
            return decision

    def _update(self, record: PersonRecord) -> LinkDecision:
        handle = self._handles[record.key]
        entry = self._entries[handle]
        old_golden = self._goldens[entry.golden_id]
        self._index.remove(handle, entry.features)
        self._count_tf(entry.features, -1)
        feats = features(record)
        decision, review = self._place(record.key, feats, exclude=handle, current=old_golden)
        target = decision.golden_id
        if target != old_golden.id:
            old_golden.drop(handle)
            if not old_golden.members and target in self._goldens:
                old_golden.replaced_by = target
            self._goldens.setdefault(target, _Golden(target, next(self._counter)))
            self._goldens[target].members.append(handle)
        entry.record = record
        entry.features = feats
        entry.golden_id = target
        self._index.add(handle, feats)
        self._count_tf(feats, +1)
        self._remember(decision, review)
        return decision

    def _place(
        self,
        key: RecordKey,
        feats: Features,
        *,
        exclude: int | None,
        current: _Golden | None,
        dry: bool = False,
    ) -> tuple[LinkDecision, ReviewItem | None]:
        model = self.model
        entries = self._entries
        seq = next(self._counter)
        candidates = self._index.candidates(feats)
        if current is not None:
            candidates.update(current.members)
        if exclude is not None:
            candidates.discard(exclude)
        n = len(candidates)
        alone = current is None or all(h == exclude for h in current.members)

        det = self._deterministic(feats, candidates)
        if det is not None:
            vector = compare(feats, entries[det].features)
            score = model.score(vector, self._tf_values(feats, vector), deterministic=True)
            return (
                LinkDecision(
                    key,
                    entries[det].golden_id,
                    DecisionKind.DETERMINISTIC,
                    Band.AUTO_LINK,
                    score,
                    entries[det].record.key,
                    n,
                    seq,
                ),
                None,
            )

        best: dict[str, tuple[float, int, tuple[int, ...]]] = {}
        # The weight depends on the comparison vector alone (the term frequencies are
        # those of ``feats``), and candidates in one block often compare alike: each
        # distinct vector is weighed once, with the very same sum.
        weights: dict[tuple[int, ...], float] = {}
        for handle in candidates:
            other = entries[handle]
            vector = compare(feats, other.features)
            weight = weights.get(vector)
            if weight is None:
                weight = weights[vector] = model.weight(vector, self._tf_values(feats, vector))
            held = best.get(other.golden_id)
            if held is None or weight > held[0]:
                best[other.golden_id] = (weight, handle, vector)
        ranked = sorted(best.items(), key=lambda kv: kv[1][0], reverse=True)
        own_id = current.id if current is not None else None
        if (
            own_id is not None
            and not alone
            and own_id in best
            and best[own_id][0] >= model.review_weight
        ):
            # Stickiness: an updated record stays while it still resembles its cluster.
            _, handle, vector = best[own_id]
            score = model.score(vector, self._tf_values(feats, vector))
            kind = DecisionKind.PROBABILISTIC
            return (
                LinkDecision(
                    key, own_id, kind, score.band, score, entries[handle].record.key, n, seq
                ),
                None,
            )
        fresh_id = own_id if (own_id is not None and alone) else None
        if not ranked:
            golden_id = fresh_id or self._new_id()
            return (
                LinkDecision(key, golden_id, DecisionKind.NEW, Band.NO_LINK, None, None, n, seq),
                None,
            )
        top_id, (_, handle, vector) = ranked[0]
        score = model.score(vector, self._tf_values(feats, vector))
        review: ReviewItem | None = None
        if score.band is Band.AUTO_LINK:
            golden_id = top_id
            kind = DecisionKind.PROBABILISTIC
            for other_id, (other_weight, _, other_vector) in ranked[1:]:
                if other_weight >= model.auto_link_weight and not dry:
                    other_score = model.score(other_vector, self._tf_values(feats, other_vector))
                    review = self._review(
                        ReviewKind.POSSIBLE_DUPLICATE, key, golden_id, other_id, other_score
                    )
                    break
        else:
            golden_id = fresh_id or self._new_id()
            kind = DecisionKind.NEW
            if score.band is Band.REVIEW and not dry:
                review = self._review(ReviewKind.POSSIBLE_MATCH, key, golden_id, top_id, score)
        decision = LinkDecision(
            key, golden_id, kind, score.band, score, entries[handle].record.key, n, seq
        )
        return decision, review

    def _new_id(self) -> str:
        while True:  # never hand out an id already known (e.g. one loaded from storage)
            golden_id = self._make_id()
            if golden_id not in self._goldens:
                return golden_id

    def _deterministic(self, feats: Features, candidates: Iterable[int]) -> int | None:
        if not feats.nhs or not feats.dob:
            return None
        if not nhs_number.is_valid(feats.nhs):
            return None
        found: int | None = None
        found_order = 0
        for handle in candidates:
            other = self._entries[handle].features
            if other.nhs == feats.nhs and other.dob == feats.dob:
                # The oldest cluster wins, and within it the record indexed first, so that
                # the evidence reported does not depend on the order of ``candidates``.
                order = self._goldens[self._entries[handle].golden_id].order
                if found is None or (order, handle) < (found_order, found):
                    found, found_order = handle, order
        return found

    def _tf_values(self, feats: Features, vector: tuple[int, ...]) -> list[float | None]:
        out: list[float | None] = []
        for name in self.model.tf_fields:
            if name == "given_name":
                out.append(self._tf.frequency(name, feats.given) if vector[1] == 1 else None)
            elif name == "family_name":
                out.append(self._tf.frequency(name, feats.family) if vector[2] == 1 else None)
            else:
                out.append(None)
        return out

    def _count_tf(self, feats: Features, delta: int) -> None:
        self._tf.add("given_name", feats.given, delta)
        self._tf.add("family_name", feats.family, delta)

    def _insert(self, record: PersonRecord, feats: Features, golden_id: str) -> None:
        handle = next(self._handle_counter)
        self._handles[record.key] = handle
        self._entries[handle] = _Entry(record, feats, golden_id)
        golden = self._goldens.get(golden_id)
        if golden is None:
            golden = self._goldens[golden_id] = _Golden(golden_id, next(self._counter))
        golden.members.append(handle)
        self._index.add(handle, feats)
        self._count_tf(feats, +1)

    def _remember(self, decision: LinkDecision, review: ReviewItem | None) -> None:
        self._decisions[decision.record] = decision
        if review is not None:
            if review.id not in self._reviews:
                self._review_log.append(review)
            self._reviews[review.id] = review

    def _review(
        self, kind: ReviewKind, key: RecordKey, golden_id: str, other: str, score: Score
    ) -> ReviewItem:
        return ReviewItem(next(self._counter), kind, key, golden_id, other, score)

    # ------------------------------------------------------- manual actions
    def merge(self, keep: str, retire: str) -> MergeEvent:
        """Merge golden record ``retire`` into ``keep``.

        ``keep`` keeps its id; ``retire`` is marked replaced by ``keep`` and never reused.

        Raises:
            MatchError: If either id is unknown, retired already, or they are the same.
        """
        with self._lock:
            kept, retired = self._golden(keep), self._golden(retire)
            if kept.id == retired.id:
                raise MatchError("cannot merge a golden record into itself")
            if kept.replaced_by or retired.replaced_by:
                raise MatchError("golden record was merged already; merge its replacement")
            moved = tuple(sorted(self._entries[h].record.key for h in retired.members))
            for handle in retired.members:
                self._entries[handle].golden_id = kept.id
                self._decisions[self._entries[handle].record.key] = self._manual(
                    self._entries[handle].record.key, kept.id
                )
            kept.members.extend(retired.members)
            retired.members = []
            retired.replaced_by = kept.id
            event = MergeEvent(next(self._counter), kept.id, retired.id, moved)
            self._merges[event.id] = event
            return event

    def unmerge(self, event_id: int) -> None:
        """Undo a merge: restore the retired golden id with the records it brought.

        Records that have since moved elsewhere stay where they are.

        Raises:
            MatchError: If the merge is unknown or its kept record was merged again.
        """
        with self._lock:
            event = self._merges.get(event_id)
            if event is None:
                raise MatchError("no merge with that id")
            kept, retired = self._golden(event.kept), self._golden(event.retired)
            if kept.replaced_by is not None:
                raise MatchError("the kept golden record was merged again; undo that first")
            retired.replaced_by = None
            for key in event.moved:
                handle = self._handles.get(key)
                if handle is not None and handle in kept.members:
                    kept.drop(handle)
                    retired.members.append(handle)
                    self._entries[handle].golden_id = retired.id
                    self._decisions[key] = self._manual(key, retired.id)
            del self._merges[event_id]

    def detach(self, key: RecordKey) -> str:
        """Move a source record out of its cluster into a new golden record.

        Returns:
            The new golden id (or the current one if the record was alone).
        """
        with self._lock:
            entry = self._entry(key)
            handle = self._handles[key]
            old = self._goldens[entry.golden_id]
            if len(old.members) == 1:
                return old.id
            old.drop(handle)
            new = _Golden(self._new_id(), next(self._counter), [handle])
            self._goldens[new.id] = new
            entry.golden_id = new.id
            self._decisions[key] = self._manual(key, new.id)
            return new.id

    def resolve_review(self, review_id: int, *, same_person: bool) -> MergeEvent | None:
        """Record a reviewer's verdict; ``same_person`` merges the pair.

        The older golden record keeps its id.
        """
        with self._lock:
            item = self._reviews.get(review_id)
            if item is None or item.resolved:
                raise MatchError("no open review with that id")
            item.resolved = True
            item.outcome = "same-person" if same_person else "different-people"
            if not same_person:
                return None
            a = self._golden(self.resolve(item.golden_id))
            b = self._golden(self.resolve(item.candidate_golden_id))
            if a.id == b.id:
                return None
            keep, retire = (a, b) if a.order <= b.order else (b, a)
            return self.merge(keep.id, retire.id)

    def remove(self, key: RecordKey) -> None:
        """Remove a source record (e.g. deleted at source). Its golden id stays known."""
        with self._lock:
            entry = self._entry(key)
            handle = self._handles.pop(key)
            self._index.remove(handle, entry.features)
            self._count_tf(entry.features, -1)
            self._goldens[entry.golden_id].drop(handle)
            del self._entries[handle]
            self._decisions.pop(key, None)

    def _manual(self, key: RecordKey, golden_id: str) -> LinkDecision:
        return LinkDecision(
            key, golden_id, DecisionKind.MANUAL, Band.AUTO_LINK, None, None, 0, next(self._counter)
        )

    def _entry(self, key: RecordKey) -> _Entry:
        handle = self._handles.get(key)
        if handle is None:
            raise MatchError("record is not indexed; check the source and local id")
        return self._entries[handle]

    def _golden(self, golden_id: str) -> _Golden:
        golden = self._goldens.get(golden_id)
        if golden is None:
            raise MatchError("unknown golden id")
        return golden
