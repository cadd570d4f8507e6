"""The cluster profiles size every rule that runs the model on a GPU, found from the rules themselves."""

import re

import pytest
import yaml

from tests.tiny import REPO

GPU_COMMANDS = ("alr importance", "alr finetune", "alr evaluate")
PROFILES = ["slurm", "gpu-node", "workstation"]


def gpu_rules():
    """Rules whose shell command trains or evaluates the model, from workflow/rules/*.smk."""
    names = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^(?:rule|checkpoint) (\w+):", path.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            if any(command in body for command in GPU_COMMANDS):
                names.add(name)
    for path in (REPO / "workflow" / "rules").glob("*.smk"):  # `use rule A as B`: B runs A's command
        names |= {b for a, b in re.findall(r"^use rule (\w+) as (\w+)", path.read_text(), flags=re.M) if a in names}
    return names


def test_the_gpu_rules_are_found():
    assert gpu_rules() == {"importance", "importance_per_seed", "finetune", "evaluate", "evaluate_base"}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_gpu_rule_gets_a_gpu_and_threads(profile):
    cfg = yaml.safe_load((REPO / "workflow" / "profiles" / profile / "profile.yaml").read_text())
    for rule in gpu_rules():
        assert cfg["set-resources"].get(rule, {}).get("gpu") == 1, f"{profile}: {rule} asks for no GPU"
        assert rule in cfg["set-threads"], f"{profile}: {rule} has no thread count"
