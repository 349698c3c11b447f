"""``sharedcare identity link / review / merge / unmerge / merges``: the persisted index.

Each command acts as the person running it (``--user``, default the login name) so that
the identity trail and the AuditEvents name them. Review listings show the two golden
records' demographics: the command is for authorised identity reviewers.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sharedcare.cli.common import DatabaseOption, console, fail, friendly_errors, settings_with

__all__ = ["register_index_commands"]

UserOption = typer.Option(
    None, "--user", help="Who is acting, for the audit trail [default: your login name]."
)


def register_index_commands(sub: typer.Typer) -> None:
    """Add the database commands to the ``identity`` sub-app."""
    sub.command("link")(link_command)
    review = typer.Typer(
        help="Pairs queued for review: list them, or decide one.", invoke_without_command=True
    )
    review.callback()(review_list_command)
    review.command("decide")(review_decide_command)
    sub.add_typer(review, name="review")
    sub.command("merge")(merge_command)
    sub.command("unmerge")(unmerge_command)
    sub.command("merges")(merges_command)


@contextmanager
def _database(database: str | None) -> Iterator[tuple[Any, Any]]:
    from sharedcare.db.engine import create_engine
    from sharedcare.db.migrate import upgrade
    from sharedcare.record.sqlstore import SqlStore

    settings = settings_with(database)
    with friendly_errors():
        engine = create_engine(settings.resolved_database_url)
        try:
            upgrade(engine)
            store = SqlStore(engine)
            store.ensure_params()
            yield engine, store
        finally:
            engine.dispose()


def _context(user: str | None, role: str = "identity-reviewer") -> Any:
    from sharedcare.record.context import RequestContext

    who = user or f"cli:{getpass.getuser()}"
    return RequestContext(user=who[:200], role=role, purpose="HOPERAT", source="cli")


def link_command(
    database: str | None = DatabaseOption,
    chunk: int = typer.Option(1000, "--chunk", min=1, help="Patients per transaction."),
    user: str | None = UserOption,
) -> None:
    """Match every Patient in the record into golden records (idempotent; re-run any time).

    Patients are matched as they are written (the ingest writer, the FHIR API, Bundles and
    ``sharedcare load``); this catches up with any left unmatched, for example by a server
    stopped between a write and its match. Only Patients new or changed since they were
    last matched are matched; Patients deleted at source leave the index. A40 merges left
    pending by an earlier version are applied.
    """
    with _database(database) as (engine, store):
        summary = link_with_progress(engine, store, _context(user, role="system"), chunk=chunk)
    console.print(summary, soft_wrap=True)


def link_with_progress(
    engine: Any, store: Any, context: Any, *, chunk: int = 1000, label: str = "matching"
) -> str:
    """Run the batch link (:func:`~sharedcare.identity.batch.link_all`) with a progress bar,
    apply A40 merges left pending, and return the one-line summary.

    Shared by ``sharedcare identity link`` and ``sharedcare load-synthetic``.
    """
    from sqlalchemy import func, select

    from sharedcare.db.tables import Resource
    from sharedcare.identity.batch import link_all
    from sharedcare.ingest.writer import apply_pending_merges

    with engine.connect() as connection:
        total = int(
            connection.scalar(
                select(func.count())
                .select_from(Resource)
                .where(Resource.resource_type == "Patient")
            )
            or 0
        )  # golden Patients included: the run passes over them too
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("Patients"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=total)
        report = link_all(
            engine, store, context, chunk=chunk, progress=lambda n: progress.advance(task, n)
        )
    merges = apply_pending_merges(engine, store)
    return (
        f"{report.seen:,} source Patients: {report.matched:,} matched, "
        f"{report.unchanged:,} unchanged, {report.removed:,} removed; "
        f"{report.goldens:,} golden records, {report.open_reviews:,} open reviews"
        + (f"; {merges:,} pending A40 merges applied" if merges else "")
    )


def _explain(evidence: bytes) -> str:
    score = orjson.loads(evidence)
    parts = [
        f"{e['field']} {e['level']} {e['weight']:+.1f}"
        for e in score.get("evidence", [])
        if e["level"] != "null"
    ]
    return ", ".join(parts)


def _summary(repo: Any, golden_id: str) -> str:
    from sharedcare.record.errors import RecordError

    try:
        patient = repo.read("Patient", golden_id).json()
    except RecordError as error:
        return f"({error.message})"
    name = (patient.get("name") or [{}])[0]
    nhs = next(
        (i.get("value") for i in patient.get("identifier", []) if "nhs-number" in i["system"]),
        None,
    )
    postcode = (patient.get("address") or [{}])[0].get("postalCode")
    return " · ".join(
        str(x)
        for x in (
            " ".join([*name.get("given", []), name.get("family", "")]).strip() or None,
            patient.get("birthDate"),
            patient.get("gender"),
            postcode,
            f"NHS {nhs}" if nhs else None,
        )
        if x
    )


def review_list_command(
    ctx: typer.Context,
    database: str | None = DatabaseOption,
    limit: int = typer.Option(50, "--limit", min=1, help="Most pairs to show."),
    user: str | None = UserOption,
) -> None:
    """List open review pairs, oldest first, with the per-field explanation."""
    if ctx.invoked_subcommand is not None:
        return
    from sqlalchemy import func, select

    from sharedcare.db.tables import IdentityReview
    from sharedcare.record.repository import Repository

    with _database(database) as (engine, store):
        with engine.connect() as connection:
            open_count = connection.scalar(
                select(func.count())
                .select_from(IdentityReview)
                .where(IdentityReview.status == "open")
            )
            items = connection.execute(
                select(IdentityReview)
                .where(IdentityReview.status == "open")
                .order_by(IdentityReview.id)
                .limit(limit)
            ).all()
        repo = Repository(store, _context(user))
        table = Table(title=f"{open_count} open review pairs", show_lines=True)
        for column in ("id", "kind", "weight", "golden records", "why"):
            table.add_column(column, overflow="fold")
        for item in items:
            table.add_row(
                str(item.id),
                item.kind,
                f"{item.match_weight:+.1f}\n(p={item.probability:.3f})",
                f"{item.golden_id}\n  {_summary(repo, item.golden_id)}\n"
                f"{item.candidate_golden_id}\n  {_summary(repo, item.candidate_golden_id)}",
                _explain(item.evidence),
            )
    console.print(table)
    console.print("decide with: sharedcare identity review decide ID --same|--different --reason …")


def review_decide_command(
    review_id: Annotated[int, typer.Argument(help="Review id (from `identity review`).")],
    same: Annotated[
        bool | None,
        typer.Option("--same/--different", help="Same person (merge) or different people."),
    ] = None,
    reason: str = typer.Option(..., "--reason", help="Why, for the audit trail."),
    database: str | None = DatabaseOption,
    user: str | None = UserOption,
) -> None:
    """Decide a review pair: --same merges the two golden records, --different keeps them."""
    from sharedcare.identity.service import IdentityError, identity_service

    if same is None:
        fail("say --same or --different")
    with _database(database) as (engine, store):
        try:
            with identity_service(engine).transaction(engine, store, _context(user)) as work:
                merge_id = work.decide(review_id, same_person=same, reason=reason)
        except IdentityError as error:
            fail(str(error))
    if merge_id is not None:
        console.print(f"review {review_id}: same person; merged (merge {merge_id})")
    else:
        console.print(f"review {review_id}: {'same person' if same else 'different people'}")


def merge_command(
    keep: Annotated[str, typer.Argument(help="Golden id that survives.")],
    retire: Annotated[str, typer.Argument(help="Golden id merged into KEEP.")],
    reason: str = typer.Option(..., "--reason", help="Why, for the audit trail."),
    database: str | None = DatabaseOption,
    user: str | None = UserOption,
) -> None:
    """Merge golden record RETIRE into KEEP (undo with `identity unmerge`)."""
    from sharedcare.identity.service import IdentityError, identity_service

    with _database(database) as (engine, store):
        try:
            with identity_service(engine).transaction(engine, store, _context(user)) as work:
                merge_id = work.merge(keep, retire, origin="manual", reason=reason)
        except IdentityError as error:
            fail(str(error))
    console.print(f"merged into {keep} (merge {merge_id}); {retire} is replaced by it")


def unmerge_command(
    merge_id: Annotated[int, typer.Argument(help="Merge id (from `identity merges`).")],
    reason: str = typer.Option(..., "--reason", help="Why, for the audit trail."),
    database: str | None = DatabaseOption,
    user: str | None = UserOption,
) -> None:
    """Undo a merge: the retired golden record is active again with the records it brought."""
    from sharedcare.identity.service import IdentityError, identity_service

    with _database(database) as (engine, store):
        try:
            with identity_service(engine).transaction(engine, store, _context(user)) as work:
                work.unmerge(merge_id, reason=reason)
        except IdentityError as error:
            fail(str(error))
    console.print(f"merge {merge_id} undone")


def merges_command(
    database: str | None = DatabaseOption,
    limit: int = typer.Option(50, "--limit", min=1, help="Most merges to show."),
) -> None:
    """List merges that can be undone, newest first."""
    from sqlalchemy import select

    from sharedcare.db.tables import IdentityMerge

    with _database(database) as (engine, _), engine.connect() as connection:
        rows = connection.execute(
            select(IdentityMerge)
            .where(IdentityMerge.status == "applied")
            .order_by(IdentityMerge.id.desc())
            .limit(limit)
        ).all()
    table = Table(title="merges")
    for column in ("id", "kept", "retired", "records moved", "origin", "by"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            row.kept,
            row.retired,
            str(len(orjson.loads(row.moved))),
            row.origin,
            row.created_by,
        )
    console.print(table)
