"""The Bulk Data kick-off request: which level, which types, since when, in which format.

https://hl7.org/fhir/uv/bulkdata/export.html#query-parameters — sharedcare supports
``_outputFormat``, ``_since`` and ``_type``. Any other parameter is refused with a 400
OperationOutcome, unless the client sent ``Prefer: handling=lenient``, in which case it is
ignored and reported in the manifest's ``error`` file. A POST kick-off carries the same
parameters in a FHIR ``Parameters`` resource (:func:`kickoff_parameters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from sharedcare.fhir.definitions import is_resource_type, patient_compartment
from sharedcare.record.errors import InvalidRequest
from sharedcare.record.instants import parse_instant_us

__all__ = [
    "NDJSON",
    "OUTPUT_FORMATS",
    "ExportSpec",
    "Level",
    "compartment_types",
    "kickoff_parameters",
    "parse_kickoff",
]

Level = Literal["system", "patient", "group"]
NDJSON = "application/fhir+ndjson"
#: The values of ``_outputFormat`` the IG requires a server to accept, all meaning NDJSON.
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
#: Parameters the IG defines that sharedcare does not implement.
_UNSUPPORTED = ("_elements", "patient", "includeAssociatedData", "_typeFilter")


def compartment_types() -> frozenset[str]:
    """Resource types that can be in a Patient compartment, per the official R4
    CompartmentDefinition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)."""
    return frozenset(patient_compartment()) | {"Patient"}


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """What one ``$export`` asks for.

    Attributes:
        level: ``system`` (``/$export``), ``patient`` (``/Patient/$export``) or ``group``.
        group_id: The Group's id, for a group-level export.
        types: The ``_type`` filter, or ``None`` for every type the level covers.
        since: ``_since`` in epoch microseconds: only resources changed after it.
        output_format: Always NDJSON (the IG's required format).
        issues: OperationOutcome issues for parameters ignored under lenient handling.
    """

    level: Level
    group_id: str | None = None
    types: tuple[str, ...] | None = None
    since: int | None = None
    output_format: str = NDJSON
    issues: list[dict[str, Any]] = field(default_factory=list)


#: ``value[x]`` types a kick-off parameter may carry, read as the text a query would hold.
_VALUE_KEYS = ("valueString", "valueInstant", "valueDateTime", "valueCode", "valueUri")


def kickoff_parameters(body: bytes) -> list[tuple[str, str]]:
    """The kick-off parameters of a POST ``$export``, in order, as ``(name, value)`` pairs.

    https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-kick-off-request — a POST
    kick-off sends a ``Parameters`` resource; each ``parameter`` has a ``name`` and one
    ``value[x]``. A ``valueReference`` (the ``patient`` parameter) becomes its reference text,
    which :func:`parse_kickoff` then refuses or ignores like any unsupported parameter.

    Raises:
        InvalidRequest: If the body is not a ``Parameters`` resource or a parameter has no
            name or no usable value.
    """
    if not body.strip():
        return []
    try:
        parameters = orjson.loads(body)
    except orjson.JSONDecodeError:
        parameters = None
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidRequest(
            "a POST $export body must be a FHIR Parameters resource in JSON "
            '({"resourceType": "Parameters", "parameter": [...]}), or empty',
            expression="Parameters",
        )
    entries = parameters.get("parameter", [])
    if not isinstance(entries, list):
        raise InvalidRequest("Parameters.parameter must be an array", expression="Parameters")
    out: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        where = f"Parameters.parameter[{index}]"
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{where} has no name", expression=where)
        value = next((entry[key] for key in _VALUE_KEYS if key in entry), None)
        reference = entry.get("valueReference")
        if value is None and isinstance(reference, dict):
            value = reference.get("reference")
        if not isinstance(value, str):
            raise InvalidRequest(
                f"{where} ({name[:64]}) needs a valueString, valueInstant or valueReference",
                expression=where,
            )
        out.append((name, value))
    return out


def _issue(message: str, expression: str) -> dict[str, Any]:
    return {
        "severity": "warning",
        "code": "not-supported",
        "diagnostics": message,
        "expression": [expression],
    }


def parse_kickoff(
    level: Level,
    params: Sequence[tuple[str, str]],
    *,
    group_id: str | None = None,
    lenient: bool = False,
) -> ExportSpec:
    """Check the kick-off parameters and turn them into an :class:`ExportSpec`.

    Args:
        level: The export level the URL names.
        params: The query parameters, in order (repeats allowed).
        group_id: The Group id from the URL, for a group-level export.
        lenient: Whether ``Prefer: handling=lenient`` was sent: unsupported parameters and
            unknown types are then ignored (and reported) instead of refused.

    Raises:
        InvalidRequest: For a malformed or unsupported parameter (not under lenient
            handling), or an ``_outputFormat`` other than NDJSON (always).
    """
    issues: list[dict[str, Any]] = []

    def refuse(message: str, expression: str) -> None:
        if not lenient:
            raise InvalidRequest(
                message + "; leave it out, or send Prefer: handling=lenient to have it ignored",
                expression=expression,
            )
        issues.append(_issue(message + "; it was ignored", expression))

    output_format = NDJSON
    since: int | None = None
    types: list[str] | None = None
    for name, value in params:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise InvalidRequest(
                    "_outputFormat must be application/fhir+ndjson (or application/ndjson, "
                    "ndjson); sharedcare writes NDJSON only",
                    expression="_outputFormat",
                )
        elif name == "_since":
            since = parse_instant_us(value)
            if since is None:
                raise InvalidRequest(
                    "_since must be a FHIR instant such as 2024-05-01T00:00:00Z",
                    expression="_since",
                )
        elif name == "_type":
            types = types if types is not None else []
            for raw in value.split(","):
                rtype = raw.strip()
                if not rtype:
                    continue
                if not is_resource_type(rtype):
                    refuse(f"_type names {rtype[:64]!r}, which is not an R4 resource type", "_type")
                elif level != "system" and rtype not in compartment_types():
                    refuse(
                        f"_type names {rtype}, which is not in the Patient compartment, so a "
                        f"{level}-level export has none to return",
                        "_type",
                    )
                elif rtype not in types:
                    types.append(rtype)
        elif name in _UNSUPPORTED:
            refuse(f"the {name} parameter is not supported by sharedcare", name)
        else:
            refuse(f"{name[:64]!r} is not a $export parameter", name[:64])
    if types is not None and not types:
        # Every named type was ignored: exporting everything instead would be a surprise.
        raise InvalidRequest(
            "_type names no resource type sharedcare can export at this level",
            expression="_type",
        )
    return ExportSpec(
        level=level,
        group_id=group_id,
        types=tuple(types) if types is not None else None,
        since=since,
        output_format=output_format,
        issues=issues,
    )
