"""Blocking: cheap keys that bring likely matches together before scoring.

Only records that share at least one blocking key are compared. The rules are chosen so
that a true match survives any single kind of error (see
docs/explanation/identity-matching.md):

=========  =====================================================  ==========================
rule       key                                                    still finds a match when
=========  =====================================================  ==========================
``nhs``    NHS number                                             names, dates, address differ
``dob``    birth year + day and month in either order             names typed badly, moved home
``names``  Metaphone of given and family name + decade of birth  day or month mistyped
``place``  postcode + first letter of given name                  surname changed, date wrong
``fdob``   Metaphone of family name + birth month and day         year mistyped, moved home
=========  =====================================================  ==========================

Each rule also says which fields it constrains, so that model training (EM) does not
learn ``m`` for a field from pairs that were selected for agreeing on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sharedcare.identity.compare import Features

__all__ = ["RULES", "BlockingIndex", "BlockingRule", "blocking_keys", "rule_key"]


@dataclass(frozen=True, slots=True)
class BlockingRule:
    """A named blocking rule and the compared fields its key constrains."""

    name: str
    constrains: tuple[str, ...]


RULES: tuple[BlockingRule, ...] = (
    BlockingRule("nhs", ("nhs_number",)),
    BlockingRule("dob", ("birth_date",)),
    BlockingRule("names", ("given_name", "family_name", "birth_date")),
    BlockingRule("place", ("address", "given_name")),
    BlockingRule("fdob", ("family_name", "birth_date")),
)


def rule_key(rule: str, f: Features) -> str | None:
    """The key of ``f`` under blocking rule ``rule``, or ``None`` when the rule does not apply."""
    if rule == "nhs":
        return f"n:{f.nhs}" if f.nhs else None
    if rule == "dob":
        if not f.dob:
            return None
        day_month = "".join(sorted((f.dob[4:6], f.dob[6:8])))
        return f"d:{f.dob[:4]}{day_month}"
    if rule == "names":
        if not f.given_phonetic or not f.family_phonetic or not f.dob:
            return None
        return f"g:{f.given_phonetic}|{f.family_phonetic}|{f.dob[:3]}"
    if rule == "place":
        if not f.postcode or not f.given:
            return None
        return f"p:{f.postcode}|{f.given[0]}"
    if rule == "fdob":
        if not f.family_phonetic or not f.dob:
            return None
        return f"f:{f.family_phonetic}|{f.dob[4:]}"
    raise ValueError(f"unknown blocking rule {rule!r}; use one of nhs, dob, names, place, fdob")


def blocking_keys(f: Features, rules: Iterable[str] | None = None) -> list[str]:
    """The blocking keys of a record's features (one per rule that applies).

    Args:
        f: The record's comparison features.
        rules: Rule names to use; all of :data:`RULES` by default.
    """
    names = [r.name for r in RULES] if rules is None else list(rules)
    keys = []
    for name in names:
        key = rule_key(name, f)
        if key is not None:
            keys.append(key)
    return keys


class BlockingIndex:
    """An inverted index from blocking key to integer record handles.

    Buckets larger than ``max_bucket`` are skipped when looking up candidates (their key
    is too common to be useful, e.g. a placeholder date of birth); the other keys of the
    record still find its matches.

    Every indexed record is held here in every process that matches (a million or more),
    so the index is kept small: a bucket is keyed by the 64-bit hash of its key, not the
    key's text, and a bucket of one record (most NHS-number, postcode and name buckets) is
    the bare handle rather than a list. Two keys with the same hash share a bucket, which
    can only add candidates to score, never lose one; with a few million keys the chance
    of any such pair is below one in a million.
    """

    __slots__ = ("_buckets", "max_bucket", "rules")

    def __init__(self, rules: Iterable[str] | None = None, max_bucket: int = 2000) -> None:
        self.rules = [r.name for r in RULES] if rules is None else list(rules)
        self.max_bucket = max_bucket
        self._buckets: dict[int, int | list[int]] = {}

    def add(self, handle: int, f: Features) -> None:
        """Index record ``handle`` under the keys of ``f``."""
        buckets = self._buckets
        for key in blocking_keys(f, self.rules):
            slot = hash(key)
            bucket = buckets.get(slot)
            if bucket is None:
                buckets[slot] = handle
            elif isinstance(bucket, int):
                buckets[slot] = [bucket, handle]
            else:
                bucket.append(handle)

    def remove(self, handle: int, f: Features) -> None:
        """Remove record ``handle`` (indexed with features ``f``)."""
        buckets = self._buckets
        for key in blocking_keys(f, self.rules):
            slot = hash(key)
            bucket = buckets.get(slot)
            if bucket is None:
                continue
            if isinstance(bucket, int):
                if bucket == handle:
                    del buckets[slot]
            elif handle in bucket:
                bucket.remove(handle)
                if len(bucket) == 1:
                    buckets[slot] = bucket[0]

    def candidates(self, f: Features) -> set[int]:
        """Handles sharing at least one usable blocking key with ``f``."""
        found: set[int] = set()
        buckets = self._buckets
        for key in blocking_keys(f, self.rules):
            bucket = buckets.get(hash(key))
            if bucket is None:
                continue
            if isinstance(bucket, int):
                found.add(bucket)
            elif len(bucket) <= self.max_bucket:
                found.update(bucket)
        return found

    def buckets(self) -> Iterator[list[int]]:
        """Iterate over the buckets (for pair generation in batch work)."""
        for bucket in self._buckets.values():
            yield [bucket] if isinstance(bucket, int) else bucket

    def __len__(self) -> int:
        return len(self._buckets)
