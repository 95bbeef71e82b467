"""structlog set-up, once per process: JSON lines for machines, console output for people."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def configure(component: str, *, level: str | None = None, **context: Any) -> None:
    """Every line carries the component and whatever context (node, replica) the process binds."""
    level_name = (level or os.environ.get("BULKHEAD_LOG_LEVEL", "info")).upper()
    renderer: Any
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(component=component, **context)


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name)
