"""The one range check of a match threshold, for every layer that takes one.

A threshold is a cosine similarity: it lies between -1 and 1 (NaN and infinities are refused).
Which threshold a deployment uses when none is given is a governance matter (the model's
current floor, :func:`openlfr.governance.floors.threshold_or_floor`); this module only checks
the number.
"""

from __future__ import annotations

import math

from openlfr.errors import InvalidInput


def check_threshold(value: object, field: str = "threshold") -> float:
    """``value`` as a float if it is a cosine threshold (between -1 and 1), else
    :class:`~openlfr.errors.InvalidInput` naming ``field``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # float()'s own refusal: the caller's input
        raise InvalidInput(f"{field} {value!r}: not a number", field=field) from None
    if isinstance(value, bool) or not math.isfinite(number) or not -1.0 <= number <= 1.0:
        raise InvalidInput(f"{field} {value}: a cosine threshold lies between -1 and 1",
                           field=field)
    return number
