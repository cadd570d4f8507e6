"""The methods alr compares: the registry of methods (`registry`), run names and their strengths
(`runs`), the loss hooks a method adds (`hooks`), the importance-weighted penalty of ALR and EWC
(`penalty`) and the KL term (`kl`).

May import: `alr.core`, `alr.assets`, `alr.config`, `alr.model`, `alr.importance`.
"""
