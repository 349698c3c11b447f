"""Jinja2 templates with the NHS.UK frontend macros (nhsuk-frontend-jinja).

Templates extend ``layout.html``, which extends the NHS.UK page template and loads the
vendored nhsuk-frontend build (``static/vendor``, see its README for versions).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader, PackageLoader

from sharedcare import __version__

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
NHSUK_ASSETS = "/static/vendor/nhsuk-frontend/assets"


def _number(value: int | float) -> str:
    return f"{value:,}"


def _when(value: datetime | None) -> str:
    return value.strftime("%d %b %Y %H:%M") if value else "never"


def _environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(WEB_DIR / "templates"),
                PackageLoader("nhsuk_frontend_jinja"),
            ]
        ),
        undefined=ChainableUndefined,
        autoescape=True,
    )
    env.filters["number"] = _number
    env.filters["when"] = _when
    env.globals.update(assetPath=NHSUK_ASSETS, version=__version__)
    return env


templates = Jinja2Templates(env=_environment())


def static_files() -> StaticFiles:
    """The static files app (vendored frontend builds and sharedcare's own assets)."""
    return StaticFiles(directory=STATIC_DIR)
