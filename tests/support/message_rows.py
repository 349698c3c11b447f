"""A stored message's two rows, ``message`` and ``message_stage``, read as one row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from sharedcare.db.tables import Message, MessageStage

_MESSAGE: Any = Message.__table__
_STAGE: Any = MessageStage.__table__


def message_rows() -> Select[Any]:
    """Every column of both rows (``id`` once), one row a message, in id order."""
    return (
        select(_MESSAGE, *(column for column in _STAGE.c if column.name != "id"))
        .join_from(_MESSAGE, _STAGE, _STAGE.c.id == _MESSAGE.c.id)
        .order_by(_MESSAGE.c.id)
    )
