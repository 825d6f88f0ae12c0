"""Small shared helpers: the package logger, warn-once, environment flags."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("ttkernels")

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message)


def env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (1/true/yes/on are true)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def parse_rank(text: str) -> int | list[int]:
    """Command-line TT rank: ``"5"`` -> 5 (every bond); ``"2,4,2"`` -> [2, 4, 2] (the inner ranks r_1..r_{d-1})."""
    import argparse

    try:
        ranks = [int(part) for part in text.split(",")]
    except ValueError:
        message = f"rank must be an int or comma-separated ints like 2,4,2, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return ranks[0] if len(ranks) == 1 else ranks
