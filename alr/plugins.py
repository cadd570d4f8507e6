"""Load the registries and the plugins that extend them: what every entry point (the `alr` command,
the workflow, the benchmarks) calls before it reads a config.

`ALR_PLUGINS=pkg.module[,other.module]` names modules that register methods and estimators
(`alr.methods.registry.register`, `alr.importance.estimators.register`); they are imported here, once per
process, after the built-in entries, so a plugin's method may use a built-in estimator.
"""

from __future__ import annotations

import importlib
import os

from .importance import estimators  # noqa: F401
from .methods import registry  # noqa: F401  (registers the built-in methods, and through it the estimators)


def plugin_modules() -> list[str]:
    return [n.strip() for n in os.environ.get("ALR_PLUGINS", "").split(",") if n.strip()]


def load_plugins() -> None:
    """Import the ALR_PLUGINS modules (each once: Python caches imported modules)."""
    for name in plugin_modules():
        importlib.import_module(name)
