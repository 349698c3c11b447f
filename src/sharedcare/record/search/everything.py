"""The resource keys of ``Patient/$everything``, found through the reference index.

https://hl7.org/fhir/R4/patient-operation-everything.html — the patient and every resource in
their compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

The keys come from a ``UNION`` of two index lookups (compartment references to the patients
in ``idx_reference``; the Patients themselves by type and id) and only then meet the
``resource`` table by primary key. Writing the same condition as
``pk IN (references) OR (type = 'Patient' AND id = ...)`` made PostgreSQL scan the whole
``resource`` table (the ``OR`` of a sub-plan and a column test cannot use an index), which
measured 265 ms p50 for a 1,000-resource patient in a 100,000-resource store
(``benchmarks/bench_everything.py``); this form costs a few milliseconds however large the
store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, union

from sharedcare.db.tables import IdxReference, Resource
from sharedcare.fhir.definitions import patient_compartment
from sharedcare.record.derived import codes_to
from sharedcare.record.sqlstore import SqlStore

__all__ = ["compartment_keys"]

R: Any = Resource.__table__
REF: Any = IdxReference.__table__


def compartment_keys(
    connection: Connection,
    store: SqlStore,
    patient_ids: Sequence[str],
    *,
    types: Sequence[str] | None = None,
    since_us: int | None = None,
) -> list[int]:
    """Keys of the current, not deleted resources in the patients' compartments, in key order.

    Args:
        connection: Where to read.
        store: The store (for search parameter ids).
        patient_ids: The Patients whose compartments to take (one, or a golden record's
            sources as well).
        types: Only these resource types (``_type``); every compartment type when ``None``.
        since_us: Only resources updated at or after this instant (epoch µs).
    """
    if not patient_ids:
        return []
    params = [
        pid
        for rtype, codes in patient_compartment().items()
        if not types or rtype in types
        for pid in (store.param_id(rtype, code) for code in codes_to(rtype, codes, "Patient"))
        if pid is not None
    ]
    parts: list[Any] = []
    if params:
        parts.append(
            select(REF.c.res.label("pk")).where(
                REF.c.param.in_(params),
                REF.c.target_type == "Patient",
                REF.c.target_id.in_(list(patient_ids)),
            )
        )
    if not types or "Patient" in types:
        parts.append(
            select(R.c.pk).where(R.c.resource_type == "Patient", R.c.id.in_(list(patient_ids)))
        )
    if not parts:
        return []
    combined: Any = parts[0]
    if len(parts) > 1:
        combined = union(*parts)
    keys = combined.subquery()
    query = select(R.c.pk).where(R.c.pk.in_(select(keys.c.pk)), R.c.deleted.is_(False))
    if since_us is not None:
        query = query.where(R.c.last_updated >= since_us)
    return list(connection.scalars(query.order_by(R.c.pk)))
