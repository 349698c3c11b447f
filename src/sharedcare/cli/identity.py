"""``sharedcare identity``: master patient index commands.

``link-files`` links two CSV files (no database). ``link``, ``review``, ``review decide``,
``merge``, ``unmerge`` and ``merges`` work on the persisted index of a database; see
docs/explanation/identity-matching.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sharedcare.cli.common import console, fail
from sharedcare.cli.identity_index import register_index_commands

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``identity`` sub-app to ``app``."""
    sub = typer.Typer(
        help="Master patient index: match and link person records.", no_args_is_help=True
    )
    sub.command("link-files")(link_files_command)
    register_index_commands(sub)
    app.add_typer(sub, name="identity")


def link_files_command(
    left: Annotated[Path, typer.Argument(help="Left CSV file.")],
    right: Annotated[Path, typer.Argument(help="Right CSV file.")],
    left_id: Annotated[str, typer.Option("--left-id", help="Id column of the left file.")],
    right_id: Annotated[str, typer.Option("--right-id", help="Id column of the right file.")],
    field_map: Annotated[
        list[str],
        typer.Option(
            "--map",
            help="FIELD=LEFTCOL:RIGHTCOL, repeatable. FIELD is one of given_name, "
            "family_name, birth_date, sex, postcode, address, nhs_number.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Pairs CSV to write.")],
    model_path: Annotated[
        Path | None, typer.Option("--model", help="Model parameters JSON (default: built in).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Lowest match weight to write (default: the auto-link weight)."),
    ] = None,
    train_model: Annotated[
        bool,
        typer.Option("--train/--no-train", help="Estimate m and u from these files first."),
    ] = False,
    one_to_one: Annotated[
        bool, typer.Option("--one-to-one", help="Keep only each record's best partner.")
    ] = False,
    save_model: Annotated[
        Path | None, typer.Option("--save-model", help="Write the model used as JSON.")
    ] = None,
) -> None:
    """Link two CSV files; write left_id,right_id,match_probability,match_weight."""
    from sharedcare.identity.compare import features
    from sharedcare.identity.linkfiles import (
        LinkError,
        link_records,
        parse_field_map,
        read_records,
        write_pairs,
    )
    from sharedcare.identity.model import MatchModel, ModelError
    from sharedcare.identity.training import train

    try:
        mapping = parse_field_map(field_map)
        model = MatchModel.load(model_path) if model_path else MatchModel.default()
        left_records = read_records(
            left, id_column=left_id, columns={k: v[0] for k, v in mapping.items()}, source="left"
        )
        right_records = read_records(
            right,
            id_column=right_id,
            columns={k: v[1] for k, v in mapping.items()},
            source="right",
        )
        if train_model:
            with console.status("estimating m and u from the files"):
                model, _ = train(
                    [features(r) for r in left_records],
                    [features(r) for r in right_records],
                    model,
                )
        with console.status(f"linking {len(left_records)} × {len(right_records)} records"):
            result = link_records(
                left_records, right_records, model, threshold=threshold, one_to_one=one_to_one
            )
        write_pairs(out, result.pairs)
        if save_model:
            model.save(save_model)
    except (LinkError, ModelError) as err:
        fail(str(err))
    except OSError:
        fail(f"cannot write {out} or the model file; check the folder exists and is writable")
    console.print(
        f"linked {len(result.pairs)} pairs from {len(left_records)} left and "
        f"{len(right_records)} right records ({result.compared} pairs compared); wrote {out}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
