"""``sharedcare synth``: write a Synthetic Dorset population and its organisation feeds."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import fields, replace
from datetime import date
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sharedcare.synthetic.generate import DEFAULT_CHUNK, DEFAULT_END, SynthConfig, run
from sharedcare.synthetic.quality import CLEAN, DataQuality

DEFAULT_PEOPLE = 20_000
_RATE_NAMES = tuple(f.name for f in fields(DataQuality))


def _fail(message: str) -> typer.Exit:
    typer.echo(f"sharedcare synth: {message}", err=True)
    return typer.Exit(code=2)


def _quality(clean: bool, settings: list[str]) -> DataQuality:
    quality = CLEAN if clean else DataQuality()
    changes: dict[str, float] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in _RATE_NAMES:
            raise _fail(f"--dq expects NAME=RATE with NAME one of: {', '.join(_RATE_NAMES)}")
        try:
            changes[name] = float(value)
        except ValueError:
            raise _fail(f"--dq {name} needs a number between 0 and 1") from None
    try:
        return replace(quality, **changes)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _clear_previous(out: Path) -> None:
    """Remove what an earlier run wrote (only folders its manifest names, and its files)."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        raise _fail(
            "output directory is not empty and holds no earlier synth run; choose a new --out"
        )
    try:
        organisations = orjson.loads(manifest.read_bytes()).get("organisations", {})
    except orjson.JSONDecodeError:
        raise _fail(
            "manifest.json in the output directory is not valid JSON; choose a new --out"
        ) from None
    for org in organisations:
        folder = out / org
        if folder.is_dir() and folder.parent == out:
            shutil.rmtree(folder)
    for name in ("truth.csv", "manifest.json"):
        (out / name).unlink(missing_ok=True)


def synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write into.")] = Path(
        "synthetic-dorset"
    ),
    people: Annotated[
        int, typer.Option("--people", help="People alive on the census date.")
    ] = DEFAULT_PEOPLE,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same output.")] = 1,
    years: Annotated[int, typer.Option("--years", help="Years of care before the census.")] = 5,
    end: Annotated[
        str, typer.Option("--end", help="Census date (YYYY-MM-DD), the end of the window.")
    ] = DEFAULT_END.isoformat(),
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (default: CPU count).")
    ] = 0,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="People per output chunk (changes file split).")
    ] = DEFAULT_CHUNK,
    dq: Annotated[
        list[str] | None,
        typer.Option("--dq", help="Override a data-quality rate, e.g. --dq name_typo=0.05."),
    ] = None,
    clean: Annotated[
        bool, typer.Option("--clean", help="Start from no data-quality faults.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier synth run in --out.")
    ] = False,
    compress: Annotated[
        bool, typer.Option("--compress", help="gzip every output file (for big runs).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Generate Synthetic Dorset: DIR/<org-code>/…, DIR/truth.csv and DIR/manifest.json."""
    try:
        census = date.fromisoformat(end)
    except ValueError:
        raise _fail("--end must be a date written YYYY-MM-DD") from None
    quality = _quality(clean, dq or [])
    if out.exists() and not out.is_dir():
        raise _fail("--out names a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise _fail("output directory is not empty; choose a new --out or pass --overwrite")
        _clear_previous(out)
    try:
        config = SynthConfig(
            people=people,
            seed=seed,
            out=out,
            end=census,
            years=years,
            chunk_size=chunk_size,
            workers=workers or os.cpu_count() or 1,
            quality=quality,
            compress=compress,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None

    if quiet or not sys.stderr.isatty():
        manifest = run(config)
    else:
        with Progress(
            TextColumn("Synthetic Dorset"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("people"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("people", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            manifest = run(config, tick)
    organisations = manifest["organisations"]
    count = len(organisations) - 1 if isinstance(organisations, dict) else 0
    typer.echo(
        f"Wrote {manifest['people_total']} people ({people} alive at census) for "
        f"{count} organisations to {out}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to the sharedcare CLI."""
    app.command("synth")(synth)
