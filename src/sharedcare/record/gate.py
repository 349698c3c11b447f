"""The gate of the repository: the access policy, the AuditEvent of every interaction, and
the connections reads run on (https://hl7.org/fhir/R4/security.html,
https://profiles.ihe.net/ITI/BALP/)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine

from sharedcare.db.engine import write_connection
from sharedcare.fhir.definitions import is_resource_type
from sharedcare.record.audit import AuditEntry, write_audit
from sharedcare.record.audit_search import refuse_trail_write
from sharedcare.record.audit_writer import AuditWriter
from sharedcare.record.context import RequestContext
from sharedcare.record.errors import Forbidden, RecordError, UnknownResourceType
from sharedcare.record.search.connections import kept_connection
from sharedcare.record.sqlstore import SqlStore

__all__ = ["Gate", "was_audited"]

T = TypeVar("T")

#: Set on an exception whose interaction's failure AuditEvent the gate has stored (or queued).
_AUDITED = "_sharedcare_audited"


def was_audited(error: BaseException) -> bool:
    """Whether the gate stored (or queued) the failure AuditEvent of ``error``'s interaction.

    The API audits a refusal that never reached the gate itself
    (:mod:`sharedcare.api.refusal_audit`); an error the gate audited is not audited twice.
    """
    return getattr(error, _AUDITED, False) is True


_single_readers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _single_reader(engine: Engine) -> Engine:
    """The engine for one-statement reads (see :meth:`Repository._single_read`)."""
    reader = _single_readers.get(engine)
    if reader is None:
        reader = engine
        if engine.dialect.name == "postgresql":
            reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        _single_readers[engine] = reader
    return reader


class Gate:
    """What every interaction shares: who is asking, the access policy, and the audit.

    Args:
        store: The SQL store.
        context: Who is asking, and why.
        audit_writer: Where AuditEvents with no write of their own (reads, searches,
            failures) go: a group-commit :class:`~sharedcare.record.audit_writer.AuditWriter` in the
            API server. Without one, each is committed in a transaction of its own.
    """

    def __init__(
        self, store: SqlStore, context: RequestContext, audit_writer: AuditWriter | None = None
    ) -> None:
        self.store = store
        self.context = context
        self.engine = store.engine
        self.audit_writer = audit_writer
        #: With an audit writer: leave AuditEvents queued in :attr:`pending_audits` rather
        #: than wait for them, for a caller on an event loop that awaits them itself before
        #: it answers.
        self.defer_audit = False
        self.pending_audits: list[Future[None] | asyncio.Future[None]] = []
        #: An engine for one-statement reads to use instead of the store's: the API
        #: server's asyncio engine, for a search run in a greenlet on its event loop
        #: (``api.fhir``). It must be in autocommit.
        self.reader: Engine | None = None

    # -- the gate -----------------------------------------------------------------------

    def ask_gate(
        self, interaction: str, resource_type: str | None, resource_id: str | None
    ) -> None:
        """Ask the access gate (the ``check_access`` hook) whether this caller may do this.

        Raises:
            Forbidden: A plugin refused; its reason is the message.
            AuditTrailReadOnly: A write of an AuditEvent (405).
        """
        from sharedcare.plugins import plugin_manager

        refuse_trail_write(interaction, resource_type, resource_id)  # AuditEvents
        refusals = plugin_manager().hook.check_access(
            context=self.context,
            interaction=interaction,
            resource_type=resource_type,
            resource_id=resource_id,
        )
        refusal = next((r for r in refusals if r), None)
        if refusal:
            raise Forbidden(refusal)

    def audit_failure(self, entry: AuditEntry, error: Exception) -> None:
        entry.outcome = "4" if isinstance(error, RecordError) and error.status < 500 else "8"
        entry.description = (
            error.message if isinstance(error, RecordError) else type(error).__name__
        )
        self._audit_alone(entry)
        setattr(error, _AUDITED, True)  # see was_audited

    def _audit_alone(self, entry: AuditEntry) -> None:
        """Store the AuditEvent of an interaction that writes nothing else; return once stored."""
        if self.audit_writer is not None:
            if self.defer_audit:
                self.pending_audits.append(self.audit_writer.submit(self.context, [entry]))
            else:
                self.audit_writer.write(self.context, [entry])
            return
        with write_connection(self.engine) as connection:
            write_audit(connection, self.context, [entry])

    def _single_read(self) -> AbstractContextManager[Connection]:
        """A connection for a read of one statement.

        On PostgreSQL it runs in autocommit: one statement sees one snapshot either way, and
        this saves the ``BEGIN`` and ``ROLLBACK`` round trips around it. On the API server's
        search engine the connection is kept for the next search (``search.connections``).
        """
        if self.reader is not None:
            return kept_connection(self.reader)
        return _single_reader(self.engine).connect()

    @contextmanager
    def _audited(self, entry: AuditEntry) -> Iterator[AuditEntry]:
        """Audit ``entry`` on failure; callers audit success in their own transaction."""
        try:
            yield entry
        except Exception as error:
            self.audit_failure(entry, error)
            raise

    def _audited_read(
        self, entry: AuditEntry, work: Callable[[Connection], T], *, single: bool = False
    ) -> T:
        """Run ``work`` behind the gate and audit it; ``single`` if it is one statement."""
        with self._audited(entry):
            self.ask_gate(entry.interaction, entry.resource_type, entry.resource_id)
            # The read runs in its own snapshot and the audit is stored after it (grouped
            # with other requests' by the audit writer). Reading inside the audit's write
            # transaction was measured: on PostgreSQL at 1M resources a broad search went
            # from 1.6 ms to 400-775 ms, and on SQLite a write transaction would serialise
            # readers.
            with self._single_read() if single else self.engine.connect() as connection:
                result = work(connection)
            self._audit_alone(entry)
            return result

    @staticmethod
    def _require_type(resource_type: str) -> None:
        if not is_resource_type(resource_type):
            raise UnknownResourceType(
                f"{resource_type} is not an R4 resource type; see /fhir/metadata"
            )
