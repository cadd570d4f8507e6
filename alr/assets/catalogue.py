"""The dataset catalogue of a config's `data` section: which datasets exist, by role, which a run
uses, and which split files and user files each one has."""

from __future__ import annotations

import copy

from ..core.errors import did_you_mean
from .general_text import sources


def unknown_domains(known: dict, domains: list[str], where: str) -> list[str]:
    """One problem for each of `domains` without a dataset under data.domains (`known`)."""
    return [
        f"{where} {d!r} has no dataset under data.domains{did_you_mean(d, known)} (known: {', '.join(known)})"
        for d in domains
        if d not in known
    ]


def datasets(data_cfg: dict, role: str | None = None, built: bool | None = None) -> dict[str, dict]:
    """The dataset specs of `data_cfg` by name: `role` "general" (the general tasks), "domain" or None
    (both, general first); `built` True: those `alr prepare-data` writes, False: the built-in lm-eval
    tasks (evaluated from lm-eval's own data), None: all."""
    specs = {
        **(data_cfg["general"]["tasks"] if role in (None, "general") else {}),
        **(data_cfg["domains"] if role in (None, "domain") else {}),
    }
    return {n: s for n, s in specs.items() if s and (built is None or (s["source"] != "lm_eval") == built)}


def data_in_use(cfg: dict) -> dict:
    """The `data` section with only what the run uses: the domains `domains` names, and no dataset or
    text source switched off with null. `alr prepare-data` builds exactly these, so a default
    dataset you do not use is never downloaded."""
    data = copy.deepcopy(cfg["data"])
    wanted = cfg.get("domains", list(data["domains"]))
    data["domains"] = {n: s for n, s in datasets(data, "domain").items() if n in wanted}
    data["general"]["tasks"] = datasets(data, "general")
    data["general"]["text"]["sources"] = sources(data["general"]["text"])
    return data


def dataset_splits(data_cfg: dict, name: str) -> list[str]:
    """The split files `alr prepare-data` writes for a dataset: a general task only its test split
    (nothing trains on it); a domain and the general text (`GENERAL_TEXT`) also train, and valid
    when their valid_size is above 0."""
    if name in data_cfg["general"]["tasks"]:
        return ["test"]
    if name in data_cfg["domains"]:
        valid = data_cfg["domains"][name].get("valid_size", data_cfg["valid_size"])
    else:
        text = data_cfg["general"]["text"]
        valid = any(s.get("valid_size", text["valid_size"]) or "valid" in s for s in sources(text).values())
    return ["test", "valid", "train"] if valid else ["test", "train"]


def jsonl_files(spec: dict) -> list[str]:
    """The user's own files of one dataset spec (`source: jsonl`: `path`, or `train` and `test`)."""
    return (
        [spec[key] for key in ("path", "train", "valid", "test") if key in spec]
        if spec.get("source") == "jsonl"
        else []
    )


def user_files(data_cfg: dict) -> list[str]:
    """Every user file a config names: prepare-data's inputs."""
    specs = [*datasets(data_cfg).values(), *sources(data_cfg["general"]["text"]).values()]
    return [path for spec in specs for path in jsonl_files(spec)]
