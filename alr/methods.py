"""Method registry: what each method name in the config means for training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass


IMPORTANCE_FILES = ("si", "si_full", "fisher", "mas")  # estimators written to results/<m>/importance/<name>.*


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    trains: bool = True           # False: the untouched base model (the reference row)
    adapter: str | None = "lora"  # "lora": PEFT LoRA on `lora.targets`; None: no adapter
    importance: str | None = None  # None: no penalty; "si"/"si_full"/"mas"/"fisher": that file; "uniform": ones
    element_wise: bool = True     # False: each layer's importance replaced by its mean
    layer_coef: str = "config"    # "config": regularize.layer_coef; or a fixed mode ("uniform", "sum")
    penalty: str = "regularize"   # config section with this method's lambda (and normalisation)
    weights_from: str | None = None  # evaluate another method's weights (WiSE-FT: lora's adapter, rescaled)
    replay: bool = False          # mix general examples into the domain data (baselines.replay_fraction)

    @property
    def regularised(self) -> bool:
        return self.importance is not None

    @property
    def importance_file(self) -> str | None:
        """The estimator whose importance file this method reads (`--importance`), or None."""
        return self.importance if self.importance in IMPORTANCE_FILES else None

    @property
    def config_sections(self) -> tuple[str, ...]:
        """Every config section `alr finetune` reads for this method, and only those: the finetune rule
        passes them (so editing another method's section reruns nothing here), and `train.json` and
        the checkpoint identity record them (so a changed value is visible and never resumed across)."""
        keys = ["model", "train"]
        if self.adapter == "lora":
            keys += ["lora", "regularize"]  # regularize.phase2_init decides how every LoRA method starts
        elif self.regularised:
            keys.append("regularize")
        if self.importance_file in ("si", "si_full"):
            keys.append("importance")  # the phase-1 settings its importance file must have been made with
        if self.penalty != "regularize":
            keys.append(self.penalty)  # its own lambda (ewc_lora: fisher)
        if self.adapter is None or self.replay:
            keys.append("baselines")  # full_ft_lr, replay_fraction
        if self.replay:
            keys.append("data")  # the general tasks whose train items are mixed in
        return tuple(keys)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("base", "no tuning; the reference row", trains=False, adapter=None),
        Method("lora", "plain LoRA on the domain (PEFT)"),
        Method("alr", "LoRA + element-wise SI importance + layer-wise coefficients (the paper)", importance="si"),
        Method("alr_no_layer", "alr with uniform layer coefficients (element-wise only)", importance="si",
               layer_coef="uniform"),
        Method("alr_no_element", "alr with each layer's importance replaced by its mean (layer-wise only)",
               importance="si", element_wise=False),
        Method("l2_lora", "LoRA + uniform importance: plain L2 on the update", importance="uniform",
               layer_coef="uniform"),
        Method("ewc_lora", "LoRA + EWC penalty from a per-sample diagonal Fisher over the whole model",
               importance="fisher", layer_coef="sum", penalty="fisher"),
        Method("full_ft", "full fine-tuning on the domain (every parameter, baselines.full_ft_lr)", adapter=None),
        Method("mas_lora", "alr with MAS importance instead of SI", importance="mas"),
        Method("wise_ft", "lora's adapter scaled by baselines.wise_ft_beta toward the base at evaluation",
               trains=False, weights_from="lora"),
        Method("replay", "LoRA on domain data mixed with a fraction of general examples", replay=True),
        Method("alr_full", "alr on full fine-tuning: SI importance of every parameter from a full phase 1",
               adapter=None, importance="si_full"),
    )
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        from .config import did_you_mean

        raise ValueError(f"unknown method {name!r}{did_you_mean(name, METHODS)}; known: {', '.join(METHODS)}") from None
