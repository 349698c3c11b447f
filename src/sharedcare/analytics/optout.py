"""National Data Opt-out for secondary use: exclude opted-out people from views, in SQL.

How an opt-out is recorded in the record (``docs/explanation/disclosure-control.md``): an
R4 ``Consent`` (https://hl7.org/fhir/R4/consent.html) with

- ``status`` = ``active``;
- ``scope`` = ``patient-privacy`` (http://terminology.hl7.org/CodeSystem/consentscope);
- ``category`` holding :data:`NDOP_CODING` (sharedcare's code for "National Data Opt-out
  recorded") or the SNOMED CT finding 827241000000103 *Dissent from secondary use of general
  practitioner patient identifiable data* (the GP "type 1" opt-out);
- ``provision.type`` = ``deny`` and ``patient`` = the person;
- ``policy[0].uri`` = :data:`NDOP_POLICY` (NHS England's national data opt-out).

NHS England holds national data opt-outs on the Spine against the NHS number and offers no
FHIR coding for them; organisations learn them from the "Check for National Data Opt-outs"
service. sharedcare records each one it learns as such a Consent so that the exclusion is part
of the shared record, audited and versioned like everything else.

Only secondary use is affected: ``sharedcare analytics export`` compiles every view through
:func:`exclude_opted_out`, and other secondary-use code (indicators) should compile over
:func:`optout_source`; the FHIR API, the portal and care coordination (direct care) never
call either.

The exclusion is an anti-join evaluated by the engine (DuckDB, PostgreSQL or Spark):
:func:`optout_source` wraps the view's source relation so that resources in the Patient
compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html) of anyone with an
active opt-out are removed by ``NOT EXISTS`` before the view sees them. Any view, library or
custom, compiles unchanged over the filtered source.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sharedcare.analytics.views import (
    DIALECTS,
    CompiledView,
    Dialect,
    Source,
    compile_for,
    parse_view,
)
from sharedcare.fhir.definitions.search import patient_compartment, search_parameters

__all__ = [
    "NDOP_CODING",
    "NDOP_POLICY",
    "TYPE1_OPTOUT_SNOMED",
    "OptOutQuery",
    "exclude_opted_out",
    "optout_consent",
    "optout_source",
    "optout_view",
    "patient_keys_path",
]

#: sharedcare's own coding for "this Consent records a National Data Opt-out".
NDOP_CODING = {
    "system": "https://sharedcare.example.org/fhir/CodeSystem/consent-category",
    "code": "national-data-opt-out",
    "display": "National data opt-out",
}
#: NHS England's description of the national data opt-out (``Consent.policy.uri``).
NDOP_POLICY = "https://digital.nhs.uk/services/national-data-opt-out"
#: SNOMED CT 827241000000103 |Dissent from secondary use of general practitioner patient
#: identifiable data (finding)|: the GP-recorded "type 1" opt-out (Read v2 9Nu0, CTV3 XaZ89).
#: Confirm the id against the current UK SNOMED CT release (not checked against a server).
TYPE1_OPTOUT_SNOMED = "827241000000103"
SNOMED = "http://snomed.info/sct"


def optout_consent(consent_id: str, patient_id: str, date_time: str) -> dict[str, Any]:
    """A Consent resource recording a National Data Opt-out for ``Patient/patient_id``."""
    return {
        "resourceType": "Consent",
        "id": consent_id,
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [dict(NDOP_CODING)]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": date_time,
        "policy": [{"uri": NDOP_POLICY}],
        "provision": {"type": "deny"},
    }


def optout_view() -> dict[str, Any]:
    """ViewDefinition listing the Patient keys with an active opt-out (one row each)."""
    category = (
        f"category.coding.where((system = '{NDOP_CODING['system']}' and code = "
        f"'{NDOP_CODING['code']}') or (system = '{SNOMED}' and code = "
        f"'{TYPE1_OPTOUT_SNOMED}')).exists()"
    )
    return {
        "resourceType": "ViewDefinition",
        "name": "national_data_optouts",
        "status": "active",
        "resource": "Consent",
        "select": [
            {
                "column": [
                    {
                        "name": "patient_key",
                        "path": "patient.getReferenceKey(Patient)",
                        "type": "string",
                    }
                ]
            }
        ],
        "where": [
            {"path": "status = 'active'"},
            {"path": "provision.type = 'deny'"},
            {"path": category},
            {"path": "patient.getReferenceKey(Patient).exists()"},
        ],
    }


def _relative(expression: str, resource_type: str) -> str:
    """A search parameter expression relative to the resource, ``resolve()`` tests removed."""
    path = expression.strip()
    if path.startswith(resource_type + "."):
        path = path[len(resource_type) + 1 :]
    # getReferenceKey(Patient) keeps only Patient references, which is all resolve() checks.
    return path.replace(".where(resolve() is Patient)", "")


@cache
def patient_keys_path(resource_type: str) -> str | None:
    """FHIRPath giving the keys of every Patient whose compartment holds the resource.

    Built from the official R4 Patient CompartmentDefinition and the SearchParameter
    expressions it names. ``None`` for types that are never in a Patient compartment.
    """
    params = patient_compartment().get(resource_type, ())
    parts = ["getResourceKey()"] if resource_type == "Patient" else []
    definitions = search_parameters(resource_type)
    for code in params:
        param = definitions.get(code)
        if param is None or param.expression is None:
            continue
        for branch in param.expression.split("|"):
            parts.append(f"({_relative(branch, resource_type)}).getReferenceKey(Patient)")
    return " | ".join(parts) if parts else None


@dataclass(frozen=True)
class OptOutQuery:
    """SQL of a view with opted-out people removed.

    Attributes:
        sql: the query (same output columns as the view).
        columns: output column names, in order.
        systems: FHIRPath system type of each column (``string``, ``integer`` ...).
        paths: the FHIRPath of each column (pseudonymisation rules read these).
        collections: whether each column is a collection (an array).
    """

    sql: str
    columns: tuple[str, ...]
    systems: tuple[str, ...]
    paths: tuple[str, ...]
    collections: tuple[bool, ...]


def _compile(raw: dict[str, Any], engine: str, source: Source) -> CompiledView:
    if engine == "spark":
        from sharedcare.analytics.views.spark import compile_view_spark

        return compile_view_spark(parse_view(raw), source)
    return compile_for(raw, engine, source)


def _dialect(engine: str) -> Dialect:
    if engine == "spark":
        from sharedcare.analytics.views.spark import SparkDialect

        return SparkDialect()
    try:
        return DIALECTS[engine]()
    except KeyError:
        raise ValueError(
            f"opt-outs can be applied on duckdb, postgres or spark, not '{engine}'"
        ) from None


def _excluded_sql(resource_type: str, engine: str, source: Source) -> str | None:
    """Keys (``Type/id``) of the resources of this type in an opted-out patient's compartment."""
    path = patient_keys_path(resource_type)
    if path is None:
        return None
    link = {
        "resource": resource_type,
        "select": [
            {
                "column": [
                    {"name": "resource_key", "path": "getResourceKey()", "type": "string"},
                    {"name": "patient_keys", "path": path, "type": "string", "collection": True},
                ]
            }
        ],
    }
    link_sql = _compile(link, engine, source).sql
    optouts = _compile(optout_view(), engine, source).sql
    if engine == "duckdb":
        expand = "CROSS JOIN unnest(_l.patient_keys) AS _u(k)"
    elif engine == "postgres":
        expand = "CROSS JOIN LATERAL jsonb_array_elements_text(_l.patient_keys) AS _u(k)"
    else:
        expand = "LATERAL VIEW explode(_l.patient_keys) _u AS k"
    exploded = f"SELECT _l.resource_key, _u.k FROM ({link_sql}) AS _l {expand}"
    return (
        f"SELECT _e.resource_key FROM ({exploded}) AS _e "
        f"JOIN ({optouts}) AS _o ON _o.patient_key = _e.k"
    )


def optout_source(resource_type: str, engine: str, source: Source) -> Source:
    """``source`` without the ``resource_type`` resources of people who opted out.

    A drop-in replacement for ``source`` when compiling any view over ``resource_type`` for
    secondary use (``export``, indicators). The exclusion is an SQL anti-join (``NOT EXISTS``)
    that the engine evaluates; resources of other types pass through unchanged.

    Args:
        resource_type: the view's resource type.
        engine: ``duckdb``, ``postgres`` or ``spark``.
        source: relation holding the resources, Consents included.
    """
    dialect = _dialect(engine)
    excluded = _excluded_sql(resource_type, engine, source)
    if excluded is None:
        return source
    root = f"_s.{dialect.quote_ident(source.json_column)}"
    key = dialect.concat(
        [
            dialect.path_text_one(root, (("resourceType", False),)),
            "'/'",
            dialect.path_text_one(root, (("id", False),)),
        ]
    )
    relation = (
        f"(SELECT _s.* FROM {source.relation} AS _s WHERE NOT EXISTS "
        f"(SELECT 1 FROM ({excluded}) AS _x WHERE _x.resource_key = {key}))"
    )
    return Source(relation, source.json_column, source.type_column, source.text_column)


def _column_paths(raw: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            for column in node.get("column", []):
                out.setdefault(column.get("name", ""), str(column.get("path", "")))
            walk(node.get("select", []))
            walk(node.get("unionAll", []))

    walk(raw.get("select", []))
    return out


def exclude_opted_out(
    raw: dict[str, Any], engine: str, source: Source, *, apply: bool = True
) -> OptOutQuery:
    """Compile ``raw`` for ``engine`` over ``source`` with opted-out people removed.

    Args:
        raw: ViewDefinition JSON.
        engine: ``duckdb``, ``postgres`` or ``spark``.
        source: the relation holding the resources (Consents included).
        apply: ``False`` only for direct-care uses; secondary use always applies it.

    Raises:
        ViewDefinitionError: the view is invalid.
        ValueError: unknown engine.
    """
    view = parse_view(raw)
    filtered = optout_source(view.resource, engine, source) if apply else source
    compiled = _compile(raw, engine, filtered)
    paths = _column_paths(raw)
    return OptOutQuery(
        compiled.sql,
        tuple(c.name for c in compiled.columns),
        tuple(c.system for c in compiled.columns),
        tuple(paths.get(c.name, "") for c in compiled.columns),
        tuple(c.collection for c in compiled.columns),
    )
