"""Rules on the data a run uses that a job would otherwise meet only when it runs: one list, applied by
`alr check-config` (and so by `make run` before any job starts) and by `alr prepare-data` before it reads
anything. Each rule takes the `data` section as `alr.assets.catalogue.data_in_use` leaves it (the configured
domains, no dataset or text source switched off) and returns one line per problem, naming the fix."""

from __future__ import annotations

from .catalogue import datasets
from .general_text import sources


def general_text_source(data_cfg: dict) -> list[str]:
    """The general text is the forgetting measure and phase 1's data: at least one source must be on."""
    if sources(data_cfg["general"]["text"]):
        return []
    return [
        "config key 'data.general.text.sources': every source is switched off (null); the forgetting measure "
        "and phase 1 read this text: keep at least one source"
    ]


def task_reads_a_domain(data_cfg: dict) -> list[str]:
    """A general task reading the same file as a domain of the run would score the domain's own items as
    general ability (prepare-data would find the shared items only after reading them)."""
    tasks = datasets(data_cfg, "general")
    problems = []
    for domain, spec in datasets(data_cfg, "domain").items():
        for task, task_spec in tasks.items():
            if spec.get("sha256") and spec.get("sha256") == task_spec.get("sha256"):
                problems.append(
                    f"config: general task {task!r} reads the same file as domain {domain!r}, so it would score "
                    f"the domain's items; set data.general.tasks.{task}: null, or leave {domain!r} out of `domains`"
                )
    return problems


RULES = (general_text_source, task_reads_a_domain)


def data_problems(data_cfg: dict) -> list[str]:
    """Every rule's problems with the data a run uses (`alr.assets.catalogue.data_in_use`)."""
    return [problem for rule in RULES for problem in rule(data_cfg)]
