"""Method registry: what each method name in the config means for training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    trains: bool = True          # False: the untouched base model (the reference row)
    adapter: str | None = "lora"  # "lora": PEFT LoRA on `lora.targets`; None: no adapter


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("base", "no tuning; the reference row", trains=False, adapter=None),
        Method("lora", "plain LoRA on the domain (PEFT)"),
    )
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None
