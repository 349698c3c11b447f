"""Source person records: what one organisation knows about one person.

A :class:`PersonRecord` is the matching core's view of a demographic record held by a
source system under its own local id. It is built from a FHIR R4 Patient resource
(https://hl7.org/fhir/R4/patient.html) or from a CSV row through a field map, and holds
tidied display values: names with their case kept, an ISO date of birth, an administrative
sex code (https://hl7.org/fhir/R4/valueset-administrative-gender.html), a postcode in its
spaced form, address lines, and the bare ten-digit NHS number.

Nothing here scores anything; :mod:`sharedcare.identity.compare` derives the comparison
features. Errors name the field that is wrong and never echo its value.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sharedcare.identity import nhs_number as nhs_numbers

__all__ = [
    "MATCH_FIELDS",
    "PersonDataError",
    "PersonRecord",
    "normalise_postcode",
    "parse_birth_date",
    "parse_sex",
]

MATCH_FIELDS = (
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "postcode",
    "address",
    "nhs_number",
)
"""Demographic fields a field map may name (``FIELD=COLUMN``)."""

_SPACES = re.compile(r"\s+")
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_SEX_CODES = {
    "m": "male",
    "male": "male",
    "1": "male",
    "f": "female",
    "female": "female",
    "2": "female",
    "o": "other",
    "other": "other",
    "9": "other",
    "u": "unknown",
    "unknown": "unknown",
    "0": "unknown",
    "x": "unknown",
}


class PersonDataError(ValueError):
    """A source record cannot be read. The message names the field, never its value."""


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = _SPACES.sub(" ", str(value)).strip()
    return text or None


def _shared(value: str | None) -> str | None:
    """``value`` as the one shared copy of that text (``sys.intern``).

    A matching process holds every source record it indexes, a million or more; names,
    postcodes, towns and source systems repeat across them, and sharing one copy of each
    saves memory without changing any value.
    """
    return sys.intern(value) if value is not None else None


@lru_cache(maxsize=65_536)
def _given_names(given: str | None) -> tuple[str, ...]:
    return tuple(sys.intern(part) for part in given.split(" ")) if given else ()


@lru_cache(maxsize=65_536)
def _birth_date(value: str) -> date | None:
    return parse_birth_date(value)


def parse_birth_date(value: str | None, field_name: str = "birth_date") -> date | None:
    """Parse a date of birth written ``YYYY-MM-DD``, ``YYYYMMDD`` or ``DD/MM/YYYY``.

    A FHIR ``date`` with a time part (``1980-02-03T00:00:00``) is cut to its date.

    Args:
        value: The text, or ``None``/blank for "not known".
        field_name: Field named in the error message.

    Returns:
        The date, or ``None`` when the value is blank.

    Raises:
        PersonDataError: If the text is not a real calendar date in one of those forms.
    """
    text = _clean(value)
    if text is None:
        return None
    text = text.split("T", 1)[0]
    try:
        if len(text) == 10 and text[4] == "-":
            return date.fromisoformat(text)
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if "/" in text:
            day, month, year = text.split("/")
            if len(year) == 4:
                return date(int(year), int(month), int(day))
    except ValueError:
        pass
    raise PersonDataError(
        f"{field_name} is not a date; write it as YYYY-MM-DD, YYYYMMDD or DD/MM/YYYY"
    )


def parse_sex(value: str | None, field_name: str = "sex") -> str | None:
    """Map a sex/gender code to FHIR administrative gender (male, female, other, unknown).

    Accepts FHIR codes, single letters and the NHS Data Dictionary person stated gender
    codes (1 male, 2 female, 9 indeterminate, 0 not known).

    Raises:
        PersonDataError: If the code is not one of those.
    """
    text = _clean(value)
    if text is None:
        return None
    code = _SEX_CODES.get(text.lower())
    if code is None:
        raise PersonDataError(
            f"{field_name} is not a recognised code; use male, female, other, unknown, "
            "M/F/U or the NHS codes 1, 2, 9, 0"
        )
    return code


def normalise_postcode(value: str | None) -> str | None:
    """Return a UK postcode in upper case with one space before the inward code.

    Text that is not shaped like a UK postcode is kept in upper case without spaces, so
    that a partly typed postcode can still be compared character by character.
    """
    text = _clean(value)
    if text is None:
        return None
    bare = text.upper().replace(" ", "")
    found = _POSTCODE.match(bare)
    if found is None:
        return bare or None
    return f"{found.group(1)} {found.group(2)}"


@dataclass(slots=True, frozen=True)
class PersonRecord:
    """One source system's demographic record for one person.

    Attributes:
        source: The source system (organisation or feed) that owns ``local_id``.
        local_id: The person's id within ``source``.
        given_names: Given names in order (first name first).
        family_name: Family name (surname).
        birth_date: Date of birth.
        sex: FHIR administrative gender code.
        postcode: UK postcode, spaced form.
        address: Address lines joined with ", " (postcode excluded).
        nhs_number: Bare ten digits as sent; may be invalid (see ``nhs_number_valid``).
        updated: When the source last changed the record, used by survivorship rules.
        address_lines: The address lines as the source gave them, and ``city``: for the
            golden record's ``Patient.address`` only (matching uses ``address``).
    """

    source: str
    local_id: str
    given_names: tuple[str, ...] = ()
    family_name: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    postcode: str | None = None
    address: str | None = None
    nhs_number: str | None = None
    updated: datetime | None = field(default=None, compare=False)
    address_lines: tuple[str, ...] = field(default=(), compare=False)
    city: str | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """The record's identity: ``(source, local_id)``."""
        return (self.source, self.local_id)

    @property
    def given_name(self) -> str | None:
        """The first given name, or ``None``."""
        return self.given_names[0] if self.given_names else None

    @property
    def nhs_number_valid(self) -> bool:
        """Whether ``nhs_number`` passes the format and modulus 11 checks."""
        return self.nhs_number is not None and nhs_numbers.is_valid(self.nhs_number)

    @classmethod
    def create(
        cls,
        source: str,
        local_id: str,
        *,
        given_name: str | None = None,
        family_name: str | None = None,
        birth_date: str | date | None = None,
        sex: str | None = None,
        postcode: str | None = None,
        address: str | None = None,
        nhs_number: str | None = None,
        updated: datetime | None = None,
        address_lines: tuple[str, ...] = (),
        city: str | None = None,
    ) -> PersonRecord:
        """Build a record from loosely typed values, tidying and checking each one.

        ``given_name`` may hold several space-separated given names. An NHS number that
        is not ten digits is kept out of matching (stored as ``None``) rather than guessed
        at; a ten-digit number that fails its check digit is kept and marked invalid.

        Raises:
            PersonDataError: If ``source``/``local_id`` is blank or a date or sex code
                cannot be read.
        """
        src = _clean(source)
        lid = _clean(local_id)
        if src is None:
            raise PersonDataError("source is empty; every record needs its source system")
        if lid is None:
            raise PersonDataError("local_id is empty; every record needs its id in its source")
        if isinstance(birth_date, str):
            dob = _birth_date(birth_date)
        else:
            dob = birth_date if isinstance(birth_date, date) else parse_birth_date(birth_date)
        return cls(
            source=sys.intern(src),
            local_id=lid,
            given_names=_given_names(_clean(given_name)),
            family_name=_shared(_clean(family_name)),
            birth_date=dob,
            sex=parse_sex(sex),
            postcode=_shared(normalise_postcode(postcode)),
            address=_clean(address),
            nhs_number=nhs_numbers.normalise(nhs_number) if nhs_number else None,
            updated=updated,
            address_lines=tuple(line for line in map(_clean, address_lines) if line),
            city=_shared(_clean(city)),
        )

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, str | None],
        *,
        source: str,
        id_column: str,
        field_map: Mapping[str, str],
    ) -> PersonRecord:
        """Build a record from a CSV row.

        Args:
            row: Column name to cell text (as from :class:`csv.DictReader`).
            source: Source system to record.
            id_column: Column holding the local id.
            field_map: Match field (one of :data:`MATCH_FIELDS`) to column name.

        Raises:
            PersonDataError: If a mapped field is unknown, a column is missing or a
                value cannot be read; the message names the column.
        """
        values: dict[str, str | None] = {}
        for name, column in field_map.items():
            if name not in MATCH_FIELDS:
                raise PersonDataError(
                    f"unknown field {name!r} in field map; use one of {', '.join(MATCH_FIELDS)}"
                )
            if column not in row:
                raise PersonDataError(f"column {column!r} (for {name}) is not in the row")
            values[name] = row[column]
        if id_column not in row:
            raise PersonDataError(f"id column {id_column!r} is not in the row")
        try:
            return cls.create(
                source,
                row[id_column] or "",
                given_name=values.get("given_name"),
                family_name=values.get("family_name"),
                birth_date=values.get("birth_date"),
                sex=values.get("sex"),
                postcode=values.get("postcode"),
                address=values.get("address"),
                nhs_number=values.get("nhs_number"),
            )
        except PersonDataError as err:
            raise PersonDataError(_rename_field(str(err), field_map, id_column)) from None

    @classmethod
    def from_fhir(
        cls, patient: Mapping[str, Any], *, source: str, local_id: str | None = None
    ) -> PersonRecord:
        """Build a record from a FHIR R4 Patient resource (as a JSON dict).

        Uses the ``official`` (else ``usual``, else first) name, ``birthDate``, ``gender``,
        the ``home`` (else first current) address and the identifier whose system is
        https://fhir.nhs.uk/Id/nhs-number. See https://hl7.org/fhir/R4/patient.html.

        Args:
            patient: The Patient resource.
            source: Source system that sent it.
            local_id: Id within the source; defaults to ``Patient.id``.

        Raises:
            PersonDataError: If it is not a Patient, has no id, or a value is malformed.
        """
        if patient.get("resourceType") != "Patient":
            raise PersonDataError("resourceType must be 'Patient'")
        lid = local_id if local_id is not None else patient.get("id")
        if not isinstance(lid, str) or not lid:
            raise PersonDataError("Patient.id is missing; pass local_id or give the resource an id")
        name = _pick(patient.get("name"), "use", ("official", "usual"))
        address = _pick(patient.get("address"), "use", ("home",), skip_use="old")
        nhs = None
        for ident in patient.get("identifier") or []:
            if isinstance(ident, Mapping) and ident.get("system") == nhs_numbers.NHS_NUMBER_SYSTEM:
                nhs = ident.get("value")
                break
        lines = [str(x) for x in (address.get("line") or [])] if address else []
        if address and address.get("city"):
            lines.append(str(address["city"]))
        updated = None
        meta = patient.get("meta")
        if isinstance(meta, Mapping) and isinstance(meta.get("lastUpdated"), str):
            try:
                updated = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
            except ValueError:
                raise PersonDataError("Patient.meta.lastUpdated is not an instant") from None
        try:
            return cls.create(
                source,
                lid,
                given_name=" ".join(str(g) for g in (name.get("given") or [])) if name else None,
                family_name=name.get("family") if name else None,
                birth_date=patient.get("birthDate"),
                sex=patient.get("gender"),
                postcode=address.get("postalCode") if address else None,
                address=", ".join(lines) or None,
                nhs_number=nhs,
                updated=updated,
                address_lines=tuple(str(x) for x in (address.get("line") or [])) if address else (),
                city=address.get("city") if address else None,
            )
        except PersonDataError as err:
            message = str(err).replace("birth_date", "Patient.birthDate", 1)
            raise PersonDataError(message.replace("sex is", "Patient.gender is", 1)) from None


def _pick(
    items: Any, key: str, preferred: tuple[str, ...], skip_use: str | None = None
) -> Mapping[str, Any] | None:
    if not isinstance(items, list):
        return None
    candidates = [
        x for x in items if isinstance(x, Mapping) and (skip_use is None or x.get(key) != skip_use)
    ]
    for wanted in preferred:
        for item in candidates:
            if item.get(key) == wanted:
                return item
    return candidates[0] if candidates else None


def _rename_field(message: str, field_map: Mapping[str, str], id_column: str) -> str:
    for name, column in field_map.items():
        if message.startswith(f"{name} "):
            return f"column {column!r} ({name})" + message[len(name) :]
    if message.startswith("local_id "):
        return f"id column {id_column!r}" + message[len("local_id") :]
    return message
