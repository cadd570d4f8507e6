"""Resumable phase-2 training: where the Trainer's checkpoints live, and which ones may be resumed.

`alr finetune --out R` lets the transformers Trainer save a checkpoint (weights or adapter,
optimizer, scheduler, RNG states, trainer state) every `train.checkpoint_steps` optimizer steps
into `R/checkpoints/`, beside the Snakemake outputs `R/model/` and `R/train.json` (Snakemake deletes
the outputs of a failed job, never this folder). Re-running the same command resumes from the newest
complete checkpoint; a successful finish removes the folder.

`R/checkpoints/run.json` records what the checkpoints belong to (method, domain, seed, model
fingerprint, training config, sha256 of the data, importance and initial adapter files). Resuming a
different run would silently mix two experiments, so a mismatch is refused with the differing keys
and the fix; nothing is deleted automatically (an accidental config edit must not destroy days of
training).

The Trainer writes a checkpoint folder file by file and `trainer_state.json` last, so a folder
without a readable `trainer_state.json` is one a kill interrupted: it is removed, and the previous
checkpoint (kept by `save_total_limit=1` until the new one is complete) is resumed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from ..core.io import read_json, write_json
from ..core.sections import differences

log = logging.getLogger(__name__)

FOLDER = "checkpoints"
IDENTITY = "run.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


class CheckpointMismatchError(ValueError):
    """Checkpoints on disk belong to another run (config, method, seed, data or inputs differ)."""


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / FOLDER


def checkpoint_step(path: str | Path) -> int:
    return int(_STEP.match(Path(path).name)[1])


def _complete(folder: Path) -> bool:
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):
        return False


def resume_point(folder: str | Path, identity: dict) -> str | None:
    """The checkpoint to resume from (None: start fresh), after checking it belongs to this run.

    Writes `folder/run.json` for a fresh run; removes checkpoint folders a kill left incomplete.
    """
    folder = Path(folder)
    steps = sorted((int(m[1]), p) for p in folder.glob("checkpoint-*") if p.is_dir() and (m := _STEP.match(p.name)))
    id_path = folder / IDENTITY
    if steps:
        saved = read_json(id_path) if id_path.exists() else {IDENTITY: "missing"}
        diff = differences(saved, json.loads(json.dumps(identity)), "the checkpoints")
        if diff:
            raise CheckpointMismatchError(
                f"{folder} holds checkpoints of a different run:\n  - "
                + "\n  - ".join(diff[:10])
                + ("\n  - ..." if len(diff) > 10 else "")
                + f"\nrestore the settings above to resume that run, or delete {folder} to start this one afresh"
            )
    else:
        write_json(id_path, identity)
    for step, path in reversed(steps):
        if _complete(path):
            log.info("resuming from %s (step %d)", path, step)
            return str(path)
        log.warning(
            "removing %s: its writing was interrupted (a kill, a full disk or a write error; "
            "no readable trainer_state.json)",
            path,
        )
        shutil.rmtree(path)
    return None


def remove(folder: str | Path) -> None:
    """Called after the final weights and train.json are written."""
    shutil.rmtree(folder, ignore_errors=True)


def no_final_checkpoint_callback():
    """The Trainer also checkpoints the last step; the final weights are written as `model/` right
    after, so that save (about 1.6 GB for full_ft of a 135M model) would be pure cost."""
    from transformers import TrainerCallback

    class NoFinalCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if control.should_training_stop:
                control.should_save = False

    return NoFinalCheckpoint()
