"""``/api/identity/…``: the master patient index's review queue and merges, as JSON.

For the portal's identity review screens. Items carry ids, scores and the per-field
evidence (levels and weights, never values); a reviewer reads the two golden Patients
through ``/fhir`` (audited like any read). Deciding a pair or undoing a merge runs the
identity service's operation as the caller: the golden Patients it changes are written
through the record's access gate and audited under the caller's identity.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from sharedcare.api.deps import EngineDep
from sharedcare.api.fhir import request_context
from sharedcare.api.responses import OrjsonResponse
from sharedcare.db.tables import IdentityMerge, IdentityReview
from sharedcare.identity.service import IdentityError, identity_service
from sharedcare.plugins import hookimpl, plugin_manager
from sharedcare.record.context import RequestContext
from sharedcare.record.sqlstore import SqlStore

router = APIRouter(prefix="/api/identity", tags=["identity"])


class Decision(BaseModel):
    """A reviewer's verdict on a queued pair."""

    same_person: bool
    reason: str = Field(min_length=1, max_length=2000)


class Undo(BaseModel):
    """Why a merge is being undone."""

    reason: str = Field(min_length=1, max_length=2000)


def _refusal(context: RequestContext, interaction: str) -> OrjsonResponse | None:
    refusals = plugin_manager().hook.check_access(
        context=context, interaction=interaction, resource_type="Patient", resource_id=None
    )
    refusal = next((r for r in refusals if r), None)
    return OrjsonResponse({"error": refusal}, status_code=403) if refusal else None


def _error(error: IdentityError) -> OrjsonResponse:
    status = 404 if "does not exist" in str(error) or "not open" in str(error) else 409
    return OrjsonResponse({"error": str(error)}, status_code=status)


@router.get("/reviews", response_class=OrjsonResponse, response_model=None)
def reviews(request: Request, engine: EngineDep, status: str = "open", limit: int = 50) -> Any:
    """Review items (``status`` open, confirmed or rejected), oldest first."""
    refused = _refusal(request_context(request), "search-type")
    if refused is not None:
        return refused
    table: Any = IdentityReview.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(table)
            .where(table.c.status == status)
            .order_by(table.c.id)
            .limit(max(1, min(limit, 500)))
        ).all()
    return {
        "reviews": [
            {
                "id": r.id,
                "kind": r.kind,
                "status": r.status,
                "source": f"Patient/{r.source_id}",
                "golden": f"Patient/{r.golden_id}",
                "candidate": f"Patient/{r.candidate_golden_id}",
                "match_weight": r.match_weight,
                "probability": r.probability,
                "evidence": orjson.loads(r.evidence).get("evidence", []),
                "reviewer": r.reviewer,
                "merge_id": r.merge_id,
            }
            for r in rows
        ]
    }


@router.post("/reviews/{review_id}/decision", response_class=OrjsonResponse, response_model=None)
def decide(review_id: int, decision: Decision, request: Request, engine: EngineDep) -> Any:
    """Decide a pair: the same person merges the golden records (the older id is kept)."""
    context = request_context(request)
    store: SqlStore = request.app.state.store
    try:
        with identity_service(engine).transaction(engine, store, context) as work:
            merge_id = work.decide(
                review_id, same_person=decision.same_person, reason=decision.reason
            )
    except IdentityError as error:
        return _error(error)
    status = "confirmed" if decision.same_person else "rejected"
    return {"review": review_id, "status": status, "merge_id": merge_id}


@router.get("/merges", response_class=OrjsonResponse, response_model=None)
def merges(request: Request, engine: EngineDep, limit: int = 50) -> Any:
    """Merges that can be undone, newest first."""
    refused = _refusal(request_context(request), "search-type")
    if refused is not None:
        return refused
    table: Any = IdentityMerge.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(table)
            .where(table.c.status == "applied")
            .order_by(table.c.id.desc())
            .limit(max(1, min(limit, 500)))
        ).all()
    return {
        "merges": [
            {
                "id": r.id,
                "kept": f"Patient/{r.kept}",
                "retired": f"Patient/{r.retired}",
                "moved": len(orjson.loads(r.moved)),
                "origin": r.origin,
                "by": r.created_by,
            }
            for r in rows
        ]
    }


@router.post("/merges/{merge_id}/undo", response_class=OrjsonResponse, response_model=None)
def undo(merge_id: int, body: Undo, request: Request, engine: EngineDep) -> Any:
    """Undo a merge: the retired golden record is active again with its source records."""
    context = request_context(request)
    store: SqlStore = request.app.state.store
    try:
        with identity_service(engine).transaction(engine, store, context) as work:
            work.unmerge(merge_id, reason=body.reason)
    except IdentityError as error:
        return _error(error)
    return {"merge": merge_id, "status": "undone"}


@hookimpl
def register_routes(app: Any) -> None:
    """Mount ``/api/identity``."""
    app.include_router(router)
