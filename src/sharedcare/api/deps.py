"""Dependencies for route handlers, as ``Annotated`` aliases.

Use them in handler signatures: ``def handler(engine: EngineDep) -> ...``. They are
``async`` so that FastAPI resolves them on the event loop, not in the worker-thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from sharedcare.config import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]
