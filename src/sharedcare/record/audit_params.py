"""The audit trail's search parameters (https://hl7.org/fhir/R4/auditevent.html#search).

Each :class:`TrailParameter` is a parameter's R4 definition and how its values compile to
a condition on the ``audit_event`` table's columns. :data:`PARAMETERS` is what
:func:`~sharedcare.record.audit_search.parse_trail_search` accepts and what the
CapabilityStatement lists for AuditEvent, so the two cannot drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from sharedcare.fhir.internals.primitives import date_range
from sharedcare.record.audit import ACTIONS, AUDIT
from sharedcare.record.errors import InvalidRequest

_SPEC = "http://hl7.org/fhir/SearchParameter/"
_ACTION_SYSTEM = "http://hl7.org/fhir/audit-event-action"
_OUTCOME_SYSTEM = "http://hl7.org/fhir/audit-event-outcome"
_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_SUBTYPE_SYSTEM = "http://hl7.org/fhir/restful-interaction"
_DAY_US = 86_400_000_000
_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})

Compile = Callable[[str, str, list[str], str], ColumnElement[bool]]


@dataclass(frozen=True, slots=True)
class TrailParameter:
    """A search parameter of the audit trail: its R4 definition and how it is compiled."""

    code: str
    type: str
    definition: str
    documentation: str
    compile: Compile
    modifiers: frozenset[str] = frozenset()


def _token(value: str) -> tuple[str | None, str]:
    """``[system|]code``: the system (``None`` when not given) and the code."""
    if "|" in value:
        given, _, code = value.partition("|")
        return given, code
    return None, value


def _token_condition(
    values: list[str], system: str, column_of: Callable[[str], ColumnElement[bool]]
) -> ColumnElement[bool]:
    parts = []
    for value in values:
        given, code = _token(value)
        parts.append(column_of(code) if given in (None, system) else false())
    return or_(*parts)


def _id(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    keys = [int(v) for v in values if v.isdigit() and len(v) < 19]
    return AUDIT.c.pk.in_(keys) if keys else false()


def _date(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    """https://hl7.org/fhir/R4/search.html#date for a point in time: the target ``recorded``
    is the range ``[t, t + 1 µs)``, compared with the value's implicit range ``[lo, hi)``."""
    parts = []
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
        rng = date_range(text)
        if rng is None:
            raise InvalidRequest(
                f"{name} takes FHIR dates such as 2026, 2026-11, 2026-11-22 or "
                "2026-11-22T10:00:00Z, optionally after a prefix such as ge or lt",
                expression=name,
            )
        lo, hi = rng
        t = AUDIT.c.recorded
        if prefix == "ap":  # widened by 10% of the distance from now, at least a day
            slack = max(abs(time.time_ns() // 1000 - lo) // 10, _DAY_US)
            lo, hi = lo - slack, hi + slack
        conditions = {
            "eq": and_(t >= lo, t < hi),
            "ap": and_(t >= lo, t < hi),
            "ne": or_(t < lo, t >= hi),
            "gt": t >= hi,
            "sa": t >= hi,
            "ge": t >= lo,
            "lt": t < lo,
            "eb": t < lo,
            "le": t < hi,
        }
        parts.append(conditions[prefix])
    return or_(*parts)


def patient_reference(value: str) -> str:
    """``Patient/123`` from ``Patient/123``, ``123`` or ``http://host/fhir/Patient/123``."""
    if "/" not in value:
        return f"Patient/{value}"
    tail = value.rstrip("/").split("/")
    if len(tail) >= 2 and tail[-2] == "Patient":
        return f"Patient/{tail[-1]}"
    if len(tail) >= 4 and tail[-4] == "Patient" and tail[-2] == "_history":
        return f"Patient/{tail[-3]}"
    return value  # another type: matches nothing, the column holds Patient references


def _patient(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    if modifier == "missing":
        return _missing(AUDIT.c.patient, name, values)
    condition: ColumnElement[bool] = AUDIT.c.patient.in_([patient_reference(v) for v in values])
    return condition


def _missing(column: Any, name: str, values: list[str]) -> ColumnElement[bool]:
    if values not in (["true"], ["false"]):
        raise InvalidRequest(f"{name} takes true or false", expression=name)
    return column.is_(None) if values == ["true"] else column.is_not(None)  # type: ignore[no-any-return]


def _agent(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    if modifier != "identifier":
        raise InvalidRequest(
            "agent: sharedcare's AuditEvents name the user by identifier "
            "(agent.who.identifier), not by a reference; search with agent:identifier=<user> "
            "or agent-name=<user>",
            expression=name,
        )
    parts = []
    for value in values:
        system, code = _token(value)
        # The user's identifier has no system: "|user" and "user" match, "sys|user" cannot.
        parts.append(AUDIT.c.agent == code if not system else false())
    return or_(*parts)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _agent_name(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    """String search (https://hl7.org/fhir/R4/search.html#string) on the user: starts with,
    ignoring case; ``:exact`` and ``:contains`` as in R4."""
    parts = []
    for value in values:
        if modifier == "exact":
            parts.append(AUDIT.c.agent == value)
            continue
        pattern = _like_escape(value.lower()) + "%"
        if modifier == "contains":
            pattern = "%" + pattern
        parts.append(func.lower(AUDIT.c.agent).like(pattern, escape="\\"))
    return or_(*parts)


def _interactions_of(action: str) -> ColumnElement[bool]:
    listed = [i for i, a in ACTIONS.items() if a == action]
    if action == "E":  # anything not otherwise mapped is an "execute"
        return or_(AUDIT.c.interaction.in_(listed), AUDIT.c.interaction.not_in(list(ACTIONS)))
    return AUDIT.c.interaction.in_(listed) if listed else false()


def _action(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    return _token_condition(values, _ACTION_SYSTEM, _interactions_of)


def _outcome(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    return _token_condition(values, _OUTCOME_SYSTEM, lambda code: AUDIT.c.outcome == code)


def _type(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    # Every AuditEvent sharedcare records is a RESTful operation.
    return _token_condition(
        values, _TYPE_SYSTEM, lambda code: true() if code == "rest" else false()
    )


def _subtype(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    return _token_condition(values, _SUBTYPE_SYSTEM, lambda code: AUDIT.c.interaction == code)


def _entity(modifier: str, name: str, values: list[str], dialect: str) -> ColumnElement[bool]:
    """``entity.what`` references: a version-specific reference (``Type/id/_history/n``)
    matches a search for ``Type/id``. The patient entity is the indexed ``patient`` column;
    other entities are found in the event documents (no index: narrow by date or patient)."""
    parts: list[ColumnElement[bool]] = []
    for value in values:
        if "/" not in value:
            raise InvalidRequest(
                f"{name} takes a typed reference such as Patient/123 or Observation/abc",
                expression=name,
            )
        if value.startswith("Patient/"):
            parts.append(AUDIT.c.patient == patient_reference(value))
        history = _like_escape(value) + "/\\_history/%"
        reference: Any
        if dialect == "postgresql":
            element = func.jsonb_array_elements(
                type_coerce(AUDIT.c.content, JSONB)["entity"]
            ).table_valued("value")
            reference = element.c.value.op("->")(literal("what")).op("->>")(literal("reference"))
        else:
            element = func.json_each(AUDIT.c.content, "$.entity").table_valued("value")
            reference = func.json_extract(element.c.value, "$.what.reference")
        parts.append(
            exists(
                select(literal(1))
                .select_from(element)
                .where(or_(reference == value, reference.like(history, escape="\\")))
            )
        )
    return or_(*parts)


def _parameter(
    code: str, type_: str, documentation: str, compile_: Compile, modifiers: str = ""
) -> TrailParameter:
    definition = _SPEC + ("Resource-id" if code == "_id" else f"AuditEvent-{code}")
    mods = frozenset(m for m in modifiers.split(",") if m)
    return TrailParameter(code, type_, definition, documentation, compile_, mods)


#: The search parameters of the audit trail, by code: what searches accept and what the
#: CapabilityStatement lists (https://hl7.org/fhir/R4/auditevent.html#search).
PARAMETERS: dict[str, TrailParameter] = {
    p.code: p
    for p in (
        _parameter("_id", "token", "The event's id.", _id),
        _parameter(
            "date",
            "date",
            "When the event was recorded (AuditEvent.recorded); every prefix of R4.",
            _date,
        ),
        _parameter(
            "patient",
            "reference",
            "The patient whose record was touched: Patient/id or id.",
            _patient,
            "missing,Patient",
        ),
        _parameter(
            "agent",
            "reference",
            "The user, with the :identifier modifier only (agent.who.identifier): "
            "agent:identifier=<user>.",
            _agent,
            "identifier",
        ),
        _parameter(
            "agent-name",
            "string",
            "The user (starts with, ignoring case; :exact, :contains).",
            _agent_name,
            "exact,contains",
        ),
        _parameter(
            "entity",
            "reference",
            "A resource the event names (entity.what), e.g. Observation/abc; not indexed "
            "except for Patient references, so narrow it by date or patient.",
            _entity,
        ),
        _parameter("action", "token", "C, R, U, D or E.", _action),
        _parameter("outcome", "token", "0 (success), 4, 8 or 12 (failures).", _outcome),
        _parameter("type", "token", "Always rest (audit-event-type).", _type),
        _parameter(
            "subtype", "token", "The RESTful interaction, e.g. read or search-type.", _subtype
        ),
    )
}
#: Result parameters (https://hl7.org/fhir/R4/search.html#return); ``_format`` and
#: ``_pretty`` are accepted and change nothing.
RESULT_PARAMETERS = ("_count", "_sort", "_total", "_cursor")
IGNORED_PARAMETERS = frozenset({"_format", "_pretty"})
