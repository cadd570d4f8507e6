"""The shipped SLURM profile made fit for the one-node test cluster (tools/slurm-local.sh), as an overlay
written beside the test, never by editing workflow/profiles/slurm: its `<...>` placeholders filled, no GPU
asked of a node that has none, every job on one thread and at most 2 GB, and the status polling of the
plugin shortened (a job of the tiny configuration takes seconds, not hours)."""

from __future__ import annotations

from pathlib import Path

import yaml

PLACEHOLDERS = {"<account>": "account", "<cpu-partition>": "partition", "<gpu-partition>": "partition"}
LOCAL = {
    "jobs": 2,
    "latency-wait": 5,
    "seconds-between-status-checks": 2,
    "slurm-init-seconds-before-status-checks": 2,
}


def local_slurm_profile(shipped: Path, out: Path, account: str, partition: str) -> Path:
    """Write `out/profile.yaml` from `shipped/profile.yaml`; returns `out`."""
    spec = yaml.safe_load((shipped / "profile.yaml").read_text())
    values = {"account": account, "partition": partition}

    def local(resources: dict) -> dict:
        out = {k: values[PLACEHOLDERS[v]] if v in PLACEHOLDERS else v for k, v in resources.items() if k != "gpu"}
        if "mem_mb" in out:
            out["mem_mb"] = min(out["mem_mb"], 2000)
        return out

    spec["default-resources"] = local(spec["default-resources"])
    spec["set-resources"] = {rule: local(res) for rule, res in spec["set-resources"].items()}
    spec["set-threads"] = dict.fromkeys(spec["set-threads"], 1)
    spec.update(LOCAL)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return out
