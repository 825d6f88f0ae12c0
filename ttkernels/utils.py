"""Small shared helpers: the package logger, warn-once, environment flags."""

from __future__ import annotations

import logging
import math
import numbers
import os

from .errors import SettingError

logger = logging.getLogger("ttkernels")

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message)


_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable: 1/true/yes/on or 0/false/no/off (any case); unset or empty gives
    ``default``. Any other value is a ValueError naming the variable, not a silent guess."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(
        f"environment variable {name}={os.environ[name]!r} is not a boolean: use one of 1/true/yes/on or 0/false/no/off"
    )


def is_integer(value: object) -> bool:
    """An integer, numpy's included (bools are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def is_finite_real(value: object) -> bool:
    """A real number that is finite (bools are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def validate_dropout(dropout: object, where: str) -> float:
    """A dropout probability in [0, 1) as a float; ``where`` prefixes the error (a layer name, or the config)."""
    if not is_finite_real(dropout) or not 0.0 <= dropout < 1.0:  # type: ignore[operator]
        raise SettingError(f"{where}: dropout must be a probability in [0, 1), got {dropout!r}")
    return float(dropout)  # type: ignore[arg-type]


def validate_alpha(alpha: object, where: str) -> float:
    """A finite real α as a float; ``where`` prefixes the error (a layer name, or the config)."""
    if not is_finite_real(alpha):
        raise SettingError(f"{where}: alpha must be a finite number, got {alpha!r}")
    return float(alpha)  # type: ignore[arg-type]


def _validate_positive(value: object, where: str, field: str) -> float:
    """A finite real number > 0 as a float; ``where`` prefixes the error and ``field`` names the setting."""
    if not is_finite_real(value) or value <= 0:  # type: ignore[operator]
        raise SettingError(f"{where}: {field} must be a finite number > 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def validate_count(value: object, where: str, field: str, allow_none: bool = False) -> int | None:
    """An integer >= 1 (or None when ``allow_none``); ``where`` prefixes the error and ``field`` names the setting."""
    if value is None and allow_none:
        return None
    if not is_integer(value) or value < 1:  # type: ignore[operator]
        what = "an integer >= 1" + (" or None" if allow_none else "")
        raise SettingError(f"{where}: {field} must be {what}, got {value!r}")
    return int(value)


def validate_learning_rate(lr: object, where: str, field: str = "learning_rate") -> float:
    """A finite real learning rate > 0 as a float; ``where`` prefixes the error and ``field`` names the setting."""
    return _validate_positive(lr, where, field)


def validate_weight_decay(weight_decay: object, where: str) -> float:
    """A finite real weight decay >= 0 as a float; ``where`` prefixes the error."""
    if not is_finite_real(weight_decay) or weight_decay < 0:  # type: ignore[operator]
        raise SettingError(f"{where}: weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return float(weight_decay)  # type: ignore[arg-type]


INIT_MODES = ("zero", "gaussian", "orthogonal")


def validate_init(init: object, where: str) -> str:
    """One of :data:`INIT_MODES`; ``where`` prefixes the error."""
    if init not in INIT_MODES:
        raise SettingError(f"{where}: init must be one of {', '.join(map(repr, INIT_MODES))}, got {init!r}")
    return str(init)


def validate_init_scale(scale: object, where: str) -> float:
    """A finite real init scale > 0 as a float; ``where`` prefixes the error."""
    return _validate_positive(scale, where, "init_scale")


def parse_rank(text: str) -> int | list[int] | str:
    """Command-line TT rank: ``"5"`` -> 5 (every bond); ``"2,4,2"`` -> [2, 4, 2] (the inner ranks r_1..r_{d-1});
    ``"2/4"`` -> "2/4" (rank 2 on every bond, 4 on the bond between the output and input modes, for any shape)."""
    import argparse

    from .errors import TTShapeError
    from .shapes import parse_boundary_rank

    try:
        if "/" in text:
            return "{}/{}".format(*parse_boundary_rank(text))
        ranks = [int(part) for part in text.split(",")]
    except (ValueError, TTShapeError):
        message = f"rank must be an int, comma-separated ints like 2,4,2, or r/R like 2/4, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return ranks[0] if len(ranks) == 1 else ranks


def parse_rank_choice(text: str) -> int | str:
    """A rank the search can offer: an int, or ``"r/R"`` (a boundary rank, valid for every shape)."""
    import argparse

    value = parse_rank(text)
    if isinstance(value, list):
        raise argparse.ArgumentTypeError(f"search ranks are an int or r/R (like 2/4), got {text!r}")
    return value
