"""Platform tables: the ICS's organisations and the feeds they send through."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from sharedcare.db.tables.base import Base


class Organisation(Base):
    """An organisation in the ICS, keyed by its ODS code (e.g. ``RBD`` for Dorset County)."""

    __tablename__ = "organisation"

    ods_code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(
        String(40), doc="acute-trust, gp-practice, community-mental-health, council, voluntary…"
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp()
    )


class Feed(Base):
    """A source of data from one organisation: an HL7 v2 sender, a FHIR client or a CSV drop.

    HL7 v2 feeds are identified by their sending application and facility (MSH-3, MSH-4).
    """

    __tablename__ = "feed"
    __table_args__ = (UniqueConstraint("protocol", "sending_application", "sending_facility"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    organisation_ods_code: Mapped[str | None] = mapped_column(
        ForeignKey("organisation.ods_code"), index=True
    )
    protocol: Mapped[str] = mapped_column(String(20), doc="hl7v2, fhir or csv")
    sending_application: Mapped[str] = mapped_column(String(200), default="")
    sending_facility: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp()
    )
    last_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
