"""Planning the ingest writer's next batch while the current one commits.

The writer process is the ingest pipeline's serial path: for each batch it plans the writes
(validation, index extraction, ``meta``: Python, under the GIL) and then waits on
PostgreSQL while they are written, the Patients matched and the transaction committed.
:class:`Preplanner` lets one thread plan batch *n + 1* while another writes batch *n*
(``docs/decisions/0025-ingest-writer-plans-ahead.md``).

A plan made ahead must be the plan the write transaction would make itself, so:

* it is built on the current versions read outside the transaction, overlaid with what
  the batches planned before it and not yet committed will have written (versions only
  grow, so the higher version wins);
* it records the version each resource it touches must have (:class:`Preplanned`
  ``assumed``); the write transaction checks them after it has locked its messages' stage
  rows (:func:`~sharedcare.ingest.writer.write_preplanned`) and plans the batch again itself
  if any differs or any message is no longer waiting (another writer, a REST update);
* the overlay is only trusted while every earlier batch committed exactly as planned. A
  batch written any other way (planned again, retried, split, failed) starts a new
  *generation*: plans of the older generation are discarded, unused, and the overlay is
  cleared. So a version that matches always stands for the content assumed.

Nothing here commits anything: exactly-once, the claim of the stage rows and the stage
changes stay in the write transaction, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from sharedcare.identity.changes import read_ahead
from sharedcare.ingest.writer import Preplanned, ToWrite, build_plan
from sharedcare.record.instants import now_us
from sharedcare.record.sqlstore import SqlStore

__all__ = ["Preplanner", "Ticket"]

logger = logging.getLogger(__name__)

_Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Ticket:
    """A batch handed from the planning thread to the writing thread."""

    seq: int
    generation: int
    preplanned: Preplanned | None


class Preplanner:
    """Plans batches ahead (one thread) for a writer that writes them in order (another).

    Args:
        engine: The writer's engine (planning reads on a connection of its own).
        store: The record store.
    """

    def __init__(self, engine: Engine, store: SqlStore) -> None:
        self._engine = engine
        self._store = store
        self._lock = threading.Lock()
        self._generation = 0
        self._finished = 0
        self._seq = 0
        # What planned batches write: key -> (batch seq, version, content).
        self._known: dict[_Key, tuple[int, int, dict[str, Any] | None]] = {}
        self._known_generation = 0

    def plan(self, items: Sequence[ToWrite]) -> Ticket:
        """Plan ``items`` (the planning thread); a ticket without a plan if that fails."""
        with self._lock:
            generation, finished = self._generation, self._finished
        if generation != self._known_generation:
            self._known.clear()
            self._known_generation = generation
        elif self._known:
            # Batches finished as planned are committed: the read below sees them.
            self._known = {k: v for k, v in self._known.items() if v[0] > finished}
        self._seq += 1
        seq = self._seq
        try:
            keys = list(
                dict.fromkeys(
                    (r["resourceType"], r["id"]) for item in items for r in item.mapped.resources
                )
            )
            with self._engine.connect() as connection:
                found = self._store.read_many(connection, keys)
                connection.rollback()
            current: dict[_Key, tuple[int, dict[str, Any] | None]] = {}
            for key in keys:
                held, stored = self._known.get(key), found.get(key)
                if held is not None and (stored is None or stored.version_id <= held[1]):
                    current[key] = (held[1], held[2])  # planned, perhaps not yet committed
                elif stored is not None:
                    current[key] = (stored.version_id, None if stored.deleted else stored.json())
            assumed = {key: current[key][0] if key in current else 0 for key in keys}
            plan, written = build_plan(self._store, list(items), current, now_us())
            # Work that depends only on the content, done here rather than on the serial
            # write transaction: each write's index rows (its key goes in there) and each
            # Patient's demographics for matching.
            for writes in plan.rounds:
                for write in writes:
                    if not write.deleted:
                        write.rows = self._store.index_templates(write)
            plan.patients = [read_ahead(patient) for patient in plan.patients]
        except Exception as error:  # the writing thread plans it in its transaction
            logger.warning("could not plan a batch ahead (%s)", type(error).__name__)
            return Ticket(seq, generation, None)
        for key, (version, content) in written.items():
            self._known[key] = (seq, version, content)
        return Ticket(seq, generation, Preplanned(list(items), plan, assumed))

    def unplanned(self) -> Ticket:
        """A ticket for a batch the writing thread plans itself (ids to read back)."""
        self._seq += 1
        with self._lock:
            return Ticket(self._seq, self._generation, None)

    def usable(self, ticket: Ticket) -> Preplanned | None:
        """The ticket's plan, if no batch before it was written other than as planned."""
        with self._lock:
            return ticket.preplanned if ticket.generation == self._generation else None

    def finished(self, ticket: Ticket, as_planned: bool) -> None:
        """Record that the ticket's batch is finished (the writing thread, in order)."""
        with self._lock:
            if not as_planned:
                self._generation += 1
            self._finished = ticket.seq
