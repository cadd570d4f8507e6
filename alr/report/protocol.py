"""The claims protocol (config/protocol.yaml): every rule and number a verdict reads, loaded and checked.

The scorecard (`alr.report.claims`) holds no margin, threshold, level or family of its own: it reads
them from here, and prints the protocol's version and the sha256 of its bytes beside the verdicts, so
a reader can tell which rules produced a card and that they were not edited in between.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from ..core.errors import ConfigError, did_you_mean
from ..core.layout import REPO_ROOT

DEFAULT_PROTOCOL = REPO_ROOT / "config" / "protocol.yaml"
GAIN_MEASURES = ("balanced_gain", "choice_nll_gain")

_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}
_COUNT = {"type": "integer", "minimum": 1}
_CLAIM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "better", "than", "domains", "text"],
    "properties": {
        "key": _NAME,
        "better": _NAME,
        "than": _NAME,
        "domains": {"type": "array", "items": _NAME, "minItems": 1, "uniqueItems": True},
        "text": {"type": "string", "minLength": 1},
    },
}
_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "level", "forgetting", "gain", "verdicts", "families", "efficiency"],
    "properties": {
        "version": {"type": "integer", "minimum": 1},
        "level": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1},
        "forgetting": {
            "type": "object",
            "additionalProperties": False,
            "required": ["primary", "sensitivity", "min_effect"],
            "properties": {
                "primary": {"enum": ["held_out", "pooled"]},
                "sensitivity": {"enum": ["held_out", "pooled"]},
                "min_effect": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "gain": {
            "type": "object",
            "additionalProperties": False,
            "required": ["measure", "margin", "require_shown"],
            "properties": {
                "measure": {"enum": list(GAIN_MEASURES)},
                "margin": {"type": "number", "exclusiveMinimum": 0},
                "require_shown": {"type": "boolean"},
            },
        },
        "verdicts": {
            "type": "object",
            "additionalProperties": False,
            "required": ["min_seeds", "grid_edge"],
            "properties": {"min_seeds": {"type": "integer", "minimum": 1}, "grid_edge": {"enum": ["undecided"]}},
        },
        "families": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            "additionalProperties": {"type": "array", "minItems": 1, "items": _CLAIM},
        },
        "efficiency": {
            "type": "object",
            "additionalProperties": False,
            "required": ["speed", "storage"],
            "properties": {
                "speed": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["text", "min_ratio", "prescribed"],
                    "properties": {
                        "text": {"type": "string"},
                        "min_ratio": {"type": "number", "exclusiveMinimum": 0},
                        "prescribed": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["si", "fisher"],
                            "properties": {"si": _COUNT, "fisher": _COUNT},
                        },
                    },
                },
                "storage": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["text", "max_share"],
                    "properties": {
                        "text": {"type": "string"},
                        "max_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Claim:
    """`better` forgets less than `than` by at least the protocol's minimum effect, at a domain gain
    no lower than `than`'s by more than its margin; judged on `domains`, tested within `family`."""

    key: str
    text: str
    better: str
    than: str
    domains: tuple[str, ...]
    family: str


@dataclass(frozen=True)
class Protocol:
    version: int
    sha256: str
    path: str
    level: float
    primary: str
    sensitivity: str
    min_effect: float
    gain_measure: str
    margin: float
    require_gain_shown: bool
    min_seeds: int
    claims: tuple[Claim, ...]
    speed: dict
    storage: dict

    @property
    def alpha(self) -> float:
        """The one-sided error of each zone of the three-zone rule before Holm: (1 - level) / 2."""
        return (1 - self.level) / 2

    def family(self, name: str) -> list[Claim]:
        return [c for c in self.claims if c.family == name]

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(c.family for c in self.claims))

    def label(self) -> str:
        return f"protocol v{self.version} (sha256 {self.sha256[:12]})"

    def check_decides(self, decides: list[str] | None) -> None:
        """Refuse an `eval.compare.decides` entry that names no claim of this protocol (nor `speed`, `storage`)."""
        known = [*dict.fromkeys(c.key for c in self.claims), "speed", "storage"]
        unknown = [name for name in decides or [] if name not in known]
        if unknown:
            raise ConfigError(
                f"config key 'eval.compare.decides': {unknown[0]!r} is no claim of {self.label()}"
                f"{did_you_mean(unknown[0], known)}; its claims: {', '.join(known)}"
            )


def protocol_path(eval_cfg: dict) -> Path:
    """The protocol a config names (`eval.compare.protocol`); a relative path is read from the repository root."""
    path = Path(eval_cfg["compare"]["protocol"])
    return path if path.is_absolute() else REPO_ROOT / path


@cache
def load_protocol(path: str | Path = DEFAULT_PROTOCOL) -> Protocol:
    """The protocol at `path`, checked against its schema; a bad file is a ConfigError naming the key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the claims protocol {path}: {exc.strerror}; pass --protocol PATH") from None
    try:
        spec = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc.__class__.__name__}); fix the file") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_SCHEMA).iter_errors(spec))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"{path}: {where}: {error.message}")
    claims = tuple(
        Claim(c["key"], c["text"], c["better"], c["than"], tuple(c["domains"]), family)
        for family, listed in spec["families"].items()
        for c in listed
    )
    keys = [c.key for c in claims]
    duplicate = sorted({k for k in keys if keys.count(k) > 1})
    if duplicate:
        raise ConfigError(f"{path}: claim key {duplicate[0]!r} is listed twice; each claim has one key")
    return Protocol(
        version=spec["version"],
        sha256=hashlib.sha256(raw).hexdigest(),
        path=str(path),
        level=float(spec["level"]),
        primary=spec["forgetting"]["primary"],
        sensitivity=spec["forgetting"]["sensitivity"],
        min_effect=float(spec["forgetting"]["min_effect"]),
        gain_measure=spec["gain"]["measure"],
        margin=float(spec["gain"]["margin"]),
        require_gain_shown=bool(spec["gain"]["require_shown"]),
        min_seeds=int(spec["verdicts"]["min_seeds"]),
        claims=claims,
        speed=spec["efficiency"]["speed"],
        storage=spec["efficiency"]["storage"],
    )
