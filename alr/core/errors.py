"""The user-facing error of a bad configuration, and the did-you-mean hint every name lookup adds.

The bottom of the package: it imports nothing of alr, so any module can raise these.
"""

from __future__ import annotations

import difflib


class ConfigError(ValueError):
    pass


def did_you_mean(value, known) -> str:
    """` (did you mean 'ewc_lora'?)` for a near miss (case, '-' for '_', a typo), else ''."""
    if not isinstance(value, str):
        return ""
    names = {str(k).lower().replace("-", "_"): str(k) for k in known}
    close = difflib.get_close_matches(value.lower().replace("-", "_"), names, n=1, cutoff=0.75)
    return f" (did you mean {names[close[0]]!r}?)" if close else ""
