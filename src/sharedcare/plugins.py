"""sharedcare's plugin hooks (pluggy), in the manner of datasette.

Core features are written as plugins on these hooks, and so can third parties'
(installed packages that declare a ``sharedcare`` entry point).

* :func:`check_access` lets the access policy refuse an interaction with the record.
* :func:`collect_status` lets each domain add its figures to the platform status.
* :func:`register_routes` lets delivery modules add routes to the web application.
* :func:`register_commands` lets modules add commands to the ``sharedcare`` CLI.
* :func:`conditional_criteria` lets a domain keep its own resources out of conditional
  interactions (identity's golden records).
* :func:`record_committed` tells domains about writes to the record once they are committed
  (identity matches the Patients among them: :mod:`sharedcare.identity.realtime`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from sharedcare.status import PlatformStatus

hookspec = pluggy.HookspecMarker("sharedcare")
hookimpl = pluggy.HookimplMarker("sharedcare")

#: Modules that implement core features on the hooks, loaded in this order.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "sharedcare.db.status",
    "sharedcare.record.status",
    "sharedcare.ingest.health",
    "sharedcare.api.health",
    "sharedcare.api.fhir",
    "sharedcare.api.audit",  # after fhir: hooks run last-registered first, so its routes win
    "sharedcare.api.bulk",
    "sharedcare.api.feeds",
    "sharedcare.api.identity",
    "sharedcare.web.home",
    "sharedcare.identity.realtime",
)


class HookSpecs:
    """The hook specifications."""

    @hookspec
    def collect_status(self, connection: Connection, status: PlatformStatus) -> None:
        """Add this plugin's figures to ``status`` (organisations, people, resources, feeds)."""

    @hookspec
    def check_access(
        self,
        context: Any,
        interaction: str,
        resource_type: str | None,
        resource_id: str | None,
    ) -> str | None:
        """Return a reason to refuse the interaction, or ``None`` to allow it.

        Called by the record's gate before every interaction. Any plugin refusing refuses.
        """

    @hookspec
    def register_routes(self, app: Any) -> None:
        """Add routes (FastAPI routers) to the web application ``app``."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add commands to the ``sharedcare`` typer application ``cli``."""

    @hookspec
    def conditional_criteria(self, resource_type: str) -> list[tuple[str, str]] | None:
        """Search parameters to add to the criteria of every conditional interaction.

        Conditional create, update and delete and conditional references
        (https://hl7.org/fhir/R4/http.html#cond-update) find their target by a search; the
        parameters returned here are added to it, so that a client's conditional write
        never lands on a resource another domain maintains (identity's golden records).
        """

    @hookspec
    def record_committed(self, store: Any, context: Any, writes: Sequence[Any]) -> None:
        """React to writes the record's repository has just committed.

        Called after the commit of every write made through
        :class:`~sharedcare.record.repository.Repository`: the RESTful interactions, batch
        and transaction bundles (https://hl7.org/fhir/R4/http.html#transaction) and
        ``sharedcare load``. Not called for writes a domain makes in its own transaction
        (the ingest writer, identity's golden records), which handle their own.

        Args:
            store: The :class:`~sharedcare.record.sqlstore.SqlStore` written to.
            context: The :class:`~sharedcare.record.context.RequestContext` of the writer.
            writes: The :class:`~sharedcare.record.sqlstore.PendingWrite` s committed.

        The writes are durable before this is called, so an implementation must not raise
        for a failure of its own work: it logs it and leaves a way to catch up.
        """


@lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-in and installed plugins loaded."""
    manager = pluggy.PluginManager("sharedcare")
    manager.add_hookspecs(HookSpecs)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    manager.load_setuptools_entrypoints("sharedcare")
    return manager
