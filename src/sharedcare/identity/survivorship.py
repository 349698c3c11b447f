"""Survivorship: which source's values make up a golden record.

A golden record shows one value per field, chosen from its source records by these rules
(also in docs/explanation/identity-matching.md):

``nhs_number``
    The valid NHS number held by the most source records; ties go to the more trusted
    source, then the most recently updated record. Invalid numbers never survive.
``birth_date``
    The date held by the most source records (a single mistyped source is outvoted);
    ties as above.
``given_names``, ``family_name``, ``sex``
    From the most trusted source that has a value; ties go to the most recently updated
    record. Names are taken together (given and family from the same record) so that a
    golden record never mixes one source's given name with another's surname.
``postcode``, ``address``
    From the most recently updated record that has either, taken together: people move,
    so recency beats trust. Records without an update time count as oldest; ties go to
    trust.

Trust is a rank per source system (lower is more trusted), set in
:class:`SurvivorshipPolicy`; unlisted sources rank after listed ones. Every chosen value
records which source record it came from, so the golden view can be explained.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sharedcare.identity.person import PersonRecord

__all__ = ["GoldenRecord", "SurvivorshipPolicy", "survive"]

_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SurvivorshipPolicy:
    """Source trust ranks for survivorship (lower rank = more trusted).

    Attributes:
        source_rank: Rank per source system; unlisted sources rank after all listed.
    """

    source_rank: Mapping[str, int] = field(default_factory=dict)

    def rank(self, source: str) -> int:
        """The trust rank of ``source``."""
        return self.source_rank.get(source, len(self.source_rank) + 1)


@dataclass(frozen=True, slots=True)
class GoldenRecord:
    """The surviving values of one golden record and where each came from.

    Attributes:
        golden_id: The stable golden-record id.
        members: ``(source, local_id)`` of every source record in it, sorted.
        given_names, family_name, birth_date, sex, postcode, address, nhs_number: Values.
        provenance: Field name to the ``(source, local_id)`` its value came from.
        address_lines, city: The chosen address as its source gave it (same source as
            ``address``), for the golden Patient.
    """

    golden_id: str
    members: tuple[tuple[str, str], ...]
    given_names: tuple[str, ...] = ()
    family_name: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    postcode: str | None = None
    address: str | None = None
    nhs_number: str | None = None
    provenance: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    address_lines: tuple[str, ...] = ()
    city: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "golden_id": self.golden_id,
            "members": [list(m) for m in self.members],
            "given_names": list(self.given_names),
            "family_name": self.family_name,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "sex": self.sex,
            "postcode": self.postcode,
            "address": self.address,
            "nhs_number": self.nhs_number,
            "provenance": {k: list(v) for k, v in self.provenance.items()},
        }


def _updated(record: PersonRecord) -> datetime:
    when = record.updated
    if when is None:
        return _OLDEST
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _by_trust(records: Sequence[PersonRecord], policy: SurvivorshipPolicy) -> list[PersonRecord]:
    # Most trusted first; among equals, most recent first; then a stable key order.
    return sorted(
        records,
        key=lambda r: (policy.rank(r.source), -_updated(r).timestamp(), r.key),
    )


def _by_recency(records: Sequence[PersonRecord], policy: SurvivorshipPolicy) -> list[PersonRecord]:
    return sorted(
        records,
        key=lambda r: (-_updated(r).timestamp(), policy.rank(r.source), r.key),
    )


def _majority(
    ordered: list[PersonRecord], value: Callable[[PersonRecord], Any]
) -> PersonRecord | None:
    votes = Counter(v for v in (value(r) for r in ordered) if v is not None)
    if not votes:
        return None
    top = max(votes.values())
    for record in ordered:  # first in trust order among the most voted values
        v = value(record)
        if v is not None and votes[v] == top:
            return record
    return None


def _first(ordered: list[PersonRecord], has: Callable[[PersonRecord], bool]) -> PersonRecord | None:
    return next((r for r in ordered if has(r)), None)


def survive(
    golden_id: str, records: Sequence[PersonRecord], policy: SurvivorshipPolicy | None = None
) -> GoldenRecord:
    """Apply the survivorship rules to the source records of one golden record.

    Args:
        golden_id: The golden id to report.
        records: Its source records (any order).
        policy: Trust ranks; all sources equal when omitted.
    """
    policy = policy or SurvivorshipPolicy()
    trusted = _by_trust(records, policy)
    recent = _by_recency(records, policy)
    provenance: dict[str, tuple[str, str]] = {}
    nhs = _majority(trusted, lambda r: r.nhs_number if r.nhs_number_valid else None)
    dob = _majority(trusted, lambda r: r.birth_date)
    names = _first(trusted, lambda r: bool(r.given_names or r.family_name))
    sex = _first(trusted, lambda r: r.sex is not None and r.sex != "unknown") or _first(
        trusted, lambda r: r.sex is not None
    )
    place = _first(recent, lambda r: bool(r.postcode or r.address))
    for name, chosen in (
        ("nhs_number", nhs),
        ("birth_date", dob),
        ("given_names", names),
        ("family_name", names),
        ("sex", sex),
        ("postcode", place),
        ("address", place),
    ):
        if chosen is not None:
            provenance[name] = chosen.key
    return GoldenRecord(
        golden_id=golden_id,
        members=tuple(sorted(r.key for r in records)),
        given_names=names.given_names if names else (),
        family_name=names.family_name if names else None,
        birth_date=dob.birth_date if dob else None,
        sex=sex.sex if sex else None,
        postcode=place.postcode if place else None,
        address=place.address if place else None,
        nhs_number=nhs.nhs_number if nhs else None,
        provenance=provenance,
        address_lines=place.address_lines if place else (),
        city=place.city if place else None,
    )
