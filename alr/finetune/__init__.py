"""Stage `finetune` (workflow/rules/finetune.smk): phase 2, one method on one domain with one seed
(`run`).

May import: `alr.core`, `alr.assets`, `alr.config`, `alr.model`, `alr.importance`, `alr.methods`.
"""
