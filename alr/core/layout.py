"""Where every file lives, relative to the working directory of a run. The workflow's rules and the
library both build paths here, so a path is spelt once (docs/files.md describes each file). Rules
pass wildcard placeholders (`run_dir("{model}", "{domain}", "{method}", "{seed}")`)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout (or installed tree) holding config/ and workflow/
DATA_DIR = "resources/data"
TABLES_DIR = "results/tables"
FIGURES_DIR = "results/figures"
GENERAL_TEXT = "general_text"  # the dataset folder of general text (phase 1, Fisher, MAS, replay; general NLL)


def model_dir(model: str) -> str:
    return f"resources/models/{model}"


def dataset_file(name: str, split: str, data_dir: str | Path = DATA_DIR) -> str:
    return f"{data_dir}/{name}/{split}.jsonl"


def run_dir(model: str, domain: str, run: str, seed) -> str:
    return f"results/{model}/{domain}/{run}/seed{seed}"


def base_file(model: str, name: str) -> str:
    """`eval.json` / `eval_items.jsonl.gz` of the untouched base model."""
    return f"results/{model}/base/{name}"


def table_file(name: str, ext: str) -> str:
    return f"{TABLES_DIR}/{name}.{ext}"


def figure_file(name: str, ext: str) -> str:
    return f"{FIGURES_DIR}/{name}.{ext}"


def importance_file(model: str, estimator: str, seed: int | str | None = None) -> str:
    """One importance file per model and estimator; with `seed` (importance.seed: run), the phase 1 of
    phase-2 seed `seed`: `results/<model>/importance/seed<seed>/<estimator>.safetensors`."""
    folder = f"results/{model}/importance" + ("" if seed is None else f"/seed{seed}")
    return f"{folder}/{estimator}.safetensors"


OPTIMIZER_STATE = "optimizer.pt"  # phase 1's final AdamW state, inside its adapter folder


def training_tracking(out: str | Path) -> tuple[str, str]:
    """(run name, TensorBoard folder) of a training under `train.report_to`: a fine-tune's run folder
    `results/<m>/<d>/<run>/seed<s>` gives `<d>/<run>/seed<s>` and `.../seed<s>/tensorboard/`; phase 1's
    importance file `si.safetensors` gives `importance/si` and `si_tensorboard/` beside it."""
    path = Path(out)
    if path.suffix == ".safetensors":
        return f"importance/{path.stem}", str(path.parent / f"{path.stem}_tensorboard")
    return "/".join(path.parts[-3:]), str(path / "tensorboard")


def phase1_adapter(importance_path: str | Path) -> Path:
    """Phase 1's own LoRA adapter (and its optimizer state), kept beside the SI importance file for
    `phase2_init: phase1`: `si.safetensors` -> `si_adapter/`."""
    path = Path(importance_path)
    return path.parent / f"{path.stem}_adapter"
