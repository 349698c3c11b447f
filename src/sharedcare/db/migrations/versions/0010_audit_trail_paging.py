"""Audit trail: indexes to page AuditEvents newest first, by patient, by user or by neither.

``GET /fhir/AuditEvent`` (``sharedcare.record.audit_search``) orders by ``(recorded, pk)``
and pages with a keyset cursor on the same pair. The single-column indexes on
``recorded`` and ``patient`` left PostgreSQL to sort every event of a patient (or of the
whole trail after the cursor) for each page, and a search by user (``agent``) had no
index at all. Each index now ends in ``(recorded, pk)``, so a page is one index range
read in order and stops after ``_count`` rows. Two indexes are replaced and one added:
every stored AuditEvent pays one more index entry.

See ``docs/decisions/0024-audit-trail-through-fhir.md``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 05:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_event_recorded_pk", "audit_event", ["recorded", "pk"])
    op.create_index("ix_audit_event_patient_recorded", "audit_event", ["patient", "recorded", "pk"])
    op.create_index("ix_audit_event_agent_recorded", "audit_event", ["agent", "recorded", "pk"])
    op.drop_index("ix_audit_event_recorded", table_name="audit_event")
    op.drop_index("ix_audit_event_patient", table_name="audit_event")


def downgrade() -> None:
    op.create_index("ix_audit_event_patient", "audit_event", ["patient"])
    op.create_index("ix_audit_event_recorded", "audit_event", ["recorded"])
    op.drop_index("ix_audit_event_agent_recorded", table_name="audit_event")
    op.drop_index("ix_audit_event_patient_recorded", table_name="audit_event")
    op.drop_index("ix_audit_event_recorded_pk", table_name="audit_event")
