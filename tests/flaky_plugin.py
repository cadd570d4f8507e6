"""A method that fails its first attempt, registered as a user's plugin would be (`ALR_PLUGINS=tests.flaky_plugin`):
the fault `make test-slurm` injects to see the SLURM profile retry a job (tests/test_slurm.py).

`flaky_lora` is plain LoRA whose loss hook adds nothing. Its hook factory, called once as a fine-tune starts,
raises when `ALR_TEST_FAIL_ONCE` names a file that does not exist yet, after creating it: the first attempt
fails, the retry finds the file and trains. Without the variable it never fails.
"""

from __future__ import annotations

import os
from pathlib import Path

from alr.methods.registry import METHODS, Method, register


def fail_once(ctx):
    marker = os.environ.get("ALR_TEST_FAIL_ONCE")
    if marker and not Path(marker).exists():
        Path(marker).write_text("failed once\n")
        raise RuntimeError(f"injected fault (tests/flaky_plugin.py): first attempt; {marker} now marks it")

    def hook(model, inputs, outputs):
        return outputs.logits.new_zeros(())

    return hook


if "flaky_lora" not in METHODS:
    register(Method("flaky_lora", "LoRA whose first attempt fails (a test plugin)", loss_hook=fail_once))
