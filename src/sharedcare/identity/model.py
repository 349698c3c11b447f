"""The Fellegi–Sunter match model: m and u per comparison level, weights, bands.

For each field and level, ``m`` is the probability of seeing that level when two records
are the same person and ``u`` the probability when they are not. A level's match weight
is ``log2(m / u)`` bits; a pair's match weight adds the prior weight
``log2(prior / (1 - prior))`` and the weight of each field's level. The match probability
is ``2**w / (1 + 2**w)``. A ``null`` level (missing value) weighs nothing.

Term-frequency adjustment: an exact agreement on a common name is weaker evidence than
one on a rare name. For fields listed in ``tf_fields``, an exact level's weight is
adjusted by ``log2(u_exact / tf(value))``, where ``tf`` is the value's relative frequency
among indexed records, floored at ``tf_minimum`` and the adjustment capped at
``±tf_max_adjustment`` bits.

Bands: a match weight at or above ``auto_link_weight`` links automatically, at or above
``review_weight`` goes to clerical review, and below that does not link.

Parameters serialise to JSON (:meth:`MatchModel.to_dict`); defaults are checked in as
``default_model.json`` beside this module and can be re-estimated with
:mod:`sharedcare.identity.training`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sharedcare.identity.compare import COMPARISONS, LEVELS

__all__ = [
    "Band",
    "FieldEvidence",
    "FieldParameters",
    "MatchModel",
    "ModelError",
    "Score",
    "TermFrequencies",
    "probability_from_weight",
]

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_model.json")
_FLOOR = 1e-9


class ModelError(ValueError):
    """Model parameters are malformed; the message says which and how to fix them."""


class Band(StrEnum):
    """Decision band for a match weight."""

    AUTO_LINK = "auto-link"
    REVIEW = "review"
    NO_LINK = "no-link"


def probability_from_weight(weight: float) -> float:
    """Convert a match weight in bits to a match probability."""
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds: float = 2.0**weight
    return odds / (1.0 + odds)


@dataclass(slots=True)
class FieldParameters:
    """m and u probabilities for the levels of one compared field (index 0 is null)."""

    name: str
    m: list[float]
    u: list[float]

    def weights(self) -> list[float]:
        """Match weight in bits of each level; the null level weighs 0."""
        out = [0.0]
        for m, u in zip(self.m[1:], self.u[1:], strict=True):
            out.append(math.log2(max(m, _FLOOR) / max(u, _FLOOR)))
        return out


@dataclass(frozen=True, slots=True)
class FieldEvidence:
    """How one field contributed to a match weight.

    Attributes:
        field: Compared field.
        level: Level label, e.g. ``exact`` or ``day_month_swap``.
        weight: Bits contributed, including any term-frequency adjustment.
        tf_adjustment: The term-frequency part of ``weight`` (0 when not adjusted).
    """

    field: str
    level: str
    weight: float
    tf_adjustment: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "field": self.field,
            "level": self.level,
            "weight": round(self.weight, 3),
            "tf_adjustment": round(self.tf_adjustment, 3),
        }


@dataclass(frozen=True, slots=True)
class Score:
    """A scored pair: total weight, probability, band and per-field evidence."""

    match_weight: float
    match_probability: float
    band: Band
    evidence: tuple[FieldEvidence, ...]
    deterministic: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "match_weight": round(self.match_weight, 3),
            "match_probability": self.match_probability,
            "band": self.band.value,
            "deterministic": self.deterministic,
            "evidence": [e.to_dict() for e in self.evidence],
        }


class TermFrequencies:
    """Counts of field values among indexed records, for term-frequency adjustment."""

    __slots__ = ("_counts", "_totals", "min_total")

    def __init__(self, fields: Sequence[str], min_total: int = 1000) -> None:
        """Args:
        fields: Fields to count.
        min_total: Below this many counted values a frequency is not trusted and
            :meth:`frequency` returns ``None`` (no adjustment).
        """
        self._counts: dict[str, dict[str, int]] = {f: {} for f in fields}
        self._totals: dict[str, int] = dict.fromkeys(fields, 0)
        self.min_total = min_total

    def add(self, field_name: str, value: str, count: int = 1) -> None:
        """Count ``value`` ``count`` times (a negative count removes it)."""
        if not value or field_name not in self._counts:
            return
        counts = self._counts[field_name]
        new = counts.get(value, 0) + count
        if new > 0:
            counts[value] = new
        else:
            counts.pop(value, None)
        self._totals[field_name] += count

    def frequency(self, field_name: str, value: str) -> float | None:
        """Relative frequency of ``value``, or ``None`` when too little has been counted."""
        total = self._totals.get(field_name, 0)
        if total < max(self.min_total, 1):
            return None
        return self._counts[field_name].get(value, 0) / total


@dataclass(slots=True)
class MatchModel:
    """Fellegi–Sunter parameters, thresholds and term-frequency settings.

    Attributes:
        fields: Parameters per compared field, in :data:`COMPARISONS` order.
        prior: Probability that two records drawn at random are the same person.
        auto_link_weight: Lowest match weight that links automatically.
        review_weight: Lowest match weight sent to clerical review.
        tf_fields: Fields whose exact level is term-frequency adjusted.
        tf_minimum: Floor on a value's frequency.
        tf_max_adjustment: Cap on the size of a term-frequency adjustment, in bits.
        no_auto_link: Levels that keep a pair out of the auto-link band whatever its
            weight (at most *review*) unless the NHS numbers agree: a completely
            different given name (twins at one address) or date of birth (a parent
            and child of the same name at one address). The default model also lists
            ``nhs_number: different`` (two numbered strangers of one name and birthday).
    """

    fields: dict[str, FieldParameters]
    prior: float = 1e-6
    auto_link_weight: float = 0.0
    review_weight: float = -6.0
    tf_fields: tuple[str, ...] = ("given_name", "family_name")
    tf_minimum: float = 1e-5
    tf_max_adjustment: float = 4.0
    no_auto_link: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"given_name": ("different",), "birth_date": ("different",)}
    )
    _weights: list[list[float]] = field(default_factory=list, repr=False)
    _tf_index: list[int] = field(default_factory=list, repr=False)
    _caps: list[tuple[int, int]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.validate()
        self.refresh()

    def validate(self) -> None:
        """Check shapes and ranges.

        Raises:
            ModelError: If a field is missing or unknown, a level count is wrong, or a
                probability is outside (0, 1].
        """
        if set(self.fields) != set(COMPARISONS):
            raise ModelError(
                f"model fields must be exactly {', '.join(COMPARISONS)}; "
                "re-export the model or start from the default"
            )
        for name in COMPARISONS:
            params = self.fields[name]
            n = len(LEVELS[name])
            if len(params.m) != n or len(params.u) != n:
                raise ModelError(f"field {name} needs {n} m and u values (one per level)")
            for value in (*params.m[1:], *params.u[1:]):
                if not 0.0 < value <= 1.0:
                    raise ModelError(f"field {name} has an m or u outside (0, 1]")
        if not 0.0 < self.prior < 1.0:
            raise ModelError("prior must be between 0 and 1 (exclusive)")
        if self.review_weight > self.auto_link_weight:
            raise ModelError("review_weight must not exceed auto_link_weight")
        unknown = set(self.tf_fields) - {"given_name", "family_name"}
        if unknown:
            raise ModelError("tf_fields names an unknown field; use given_name or family_name")
        for name, labels in self.no_auto_link.items():
            if name not in LEVELS or not set(labels) <= set(LEVELS[name]):
                raise ModelError("no_auto_link names an unknown field or level; see LEVELS")

    def refresh(self) -> None:
        """Recompute cached weights after m, u or tf settings change."""
        self._weights = [self.fields[name].weights() for name in COMPARISONS]
        self._tf_index = [COMPARISONS.index(name) for name in self.tf_fields]
        self._caps = [
            (COMPARISONS.index(name), LEVELS[name].index(label))
            for name, labels in self.no_auto_link.items()
            for label in labels
        ]

    def capped(self, vector: Sequence[int]) -> bool:
        """Whether a comparison vector is barred from the auto-link band.

        Agreeing NHS numbers lift the bar: the number outweighs one mistyped field.
        """
        if vector[0] == 1:
            return False
        return any(vector[i] == level for i, level in self._caps)

    @property
    def prior_weight(self) -> float:
        """The prior as a weight in bits."""
        return math.log2(self.prior / (1.0 - self.prior))

    def weight_table(self) -> list[list[float]]:
        """Weight of each level of each field, in :data:`COMPARISONS` order (a copy)."""
        return [list(w) for w in self._weights]

    def level_weights(self, field_name: str) -> list[float]:
        """Weights of the levels of ``field_name``."""
        return list(self._weights[COMPARISONS.index(field_name)])

    def band(self, match_weight: float) -> Band:
        """The decision band of ``match_weight``."""
        if match_weight >= self.auto_link_weight:
            return Band.AUTO_LINK
        if match_weight >= self.review_weight:
            return Band.REVIEW
        return Band.NO_LINK

    def tf_adjustment(self, index: int, frequency: float | None) -> float:
        """Term-frequency adjustment of the exact level of field ``index``."""
        if frequency is None:
            return 0.0
        u_exact = self.fields[COMPARISONS[index]].u[1]
        adjustment = math.log2(u_exact / max(frequency, self.tf_minimum))
        return max(-self.tf_max_adjustment, min(self.tf_max_adjustment, adjustment))

    def weight(
        self, vector: Sequence[int], tf_values: Sequence[float | None] | None = None
    ) -> float:
        """Match weight of a comparison vector.

        Args:
            vector: Level index per field, in :data:`COMPARISONS` order.
            tf_values: Frequency of the agreed value per field in ``tf_fields`` order
                (``None`` entries skip the adjustment); omit to skip it entirely.
        """
        weights = self._weights
        total = self.prior_weight
        for i, level in enumerate(vector):
            total += weights[i][level]
        if tf_values is not None:
            for j, i in enumerate(self._tf_index):
                if vector[i] == 1:
                    total += self.tf_adjustment(i, tf_values[j])
        return total

    def band_of(
        self, vector: Sequence[int], tf_values: Sequence[float | None] | None = None
    ) -> Band:
        """The band :meth:`score` gives a vector, without building its explanation.

        Adds the same terms in the same order as :meth:`score`, so the two always agree.
        """
        weights = self._weights
        tf_index = self._tf_index
        total = self.prior_weight
        for i, level in enumerate(vector):
            adjustment = 0.0
            if tf_values is not None and level == 1 and i in tf_index:
                adjustment = self.tf_adjustment(i, tf_values[tf_index.index(i)])
            total += weights[i][level] + adjustment
        band = self.band(total)
        if band is Band.AUTO_LINK and self.capped(vector):
            band = Band.REVIEW
        return band

    def score(
        self,
        vector: Sequence[int],
        tf_values: Sequence[float | None] | None = None,
        *,
        deterministic: bool = False,
    ) -> Score:
        """Score a comparison vector with its per-field explanation."""
        evidence = []
        total = self.prior_weight
        for i, level in enumerate(vector):
            name = COMPARISONS[i]
            adjustment = 0.0
            if tf_values is not None and level == 1 and i in self._tf_index:
                adjustment = self.tf_adjustment(i, tf_values[self._tf_index.index(i)])
            contribution = self._weights[i][level] + adjustment
            total += contribution
            evidence.append(FieldEvidence(name, LEVELS[name][level], contribution, adjustment))
        band = Band.AUTO_LINK if deterministic else self.band(total)
        if band is Band.AUTO_LINK and not deterministic and self.capped(vector):
            band = Band.REVIEW
        return Score(total, probability_from_weight(total), band, tuple(evidence), deterministic)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, with level labels for readability."""
        return {
            "prior": self.prior,
            "auto_link_weight": self.auto_link_weight,
            "review_weight": self.review_weight,
            "tf_fields": list(self.tf_fields),
            "tf_minimum": self.tf_minimum,
            "tf_max_adjustment": self.tf_max_adjustment,
            "no_auto_link": {k: list(v) for k, v in self.no_auto_link.items()},
            "fields": {
                name: {
                    "levels": {
                        label: {"m": p.m[i], "u": p.u[i]}
                        for i, label in enumerate(LEVELS[name])
                        if i > 0
                    }
                }
                for name, p in ((n, self.fields[n]) for n in COMPARISONS)
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatchModel:
        """Read parameters written by :meth:`to_dict`.

        Raises:
            ModelError: If a field or level is missing or a value is not a number.
        """
        if not isinstance(data, Mapping):
            raise ModelError("model parameters must be a JSON object; see default_model.json")
        try:
            fields = {}
            for name in COMPARISONS:
                levels = data["fields"][name]["levels"]
                m = [1.0]
                u = [1.0]
                for label in LEVELS[name][1:]:
                    m.append(float(levels[label]["m"]))
                    u.append(float(levels[label]["u"]))
                fields[name] = FieldParameters(name, m, u)
            return cls(
                fields=fields,
                prior=float(data["prior"]),
                auto_link_weight=float(data["auto_link_weight"]),
                review_weight=float(data["review_weight"]),
                tf_fields=tuple(data.get("tf_fields", ("given_name", "family_name"))),
                tf_minimum=float(data.get("tf_minimum", 1e-5)),
                tf_max_adjustment=float(data.get("tf_max_adjustment", 4.0)),
                no_auto_link={
                    str(k): tuple(str(x) for x in v)
                    for k, v in data.get("no_auto_link", {}).items()
                },
            )
        except ModelError:
            raise
        except KeyError as err:
            raise ModelError(
                f"model parameters lack {err.args[0]!r}; start from default_model.json"
            ) from None
        except (TypeError, ValueError):
            raise ModelError("model parameters hold a value that is not a number") from None

    def save(self, path: Path) -> None:
        """Write the parameters as JSON to ``path``."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> MatchModel:
        """Read parameters from a JSON file.

        Raises:
            ModelError: If the file cannot be read, is not JSON or lacks parameters.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError:
            raise ModelError(f"model file {path} cannot be read; check the path") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"model file {path.name} is not valid JSON") from None
        return cls.from_dict(data)

    @classmethod
    def default(cls) -> MatchModel:
        """The checked-in default parameters."""
        return cls.load(DEFAULT_MODEL_PATH)

    def copy(self) -> MatchModel:
        """A deep copy."""
        return MatchModel.from_dict(self.to_dict())
