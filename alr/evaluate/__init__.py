"""Stage `evaluate` (workflow/rules/evaluate.smk): scoring a model through lm-eval and the general
text's NLL.

- `run`: one evaluation, `alr evaluate`;
- `tasks`: the lm-eval tasks of the canonical splits and one lm-eval pass;
- `records`: the eval record (eval.json and the files beside it): names, writer and readers, which
  the reports import;
- `scored_lm`, `text_nll`, `nll_task_metric`: the scorers.

May import: `alr.core`, `alr.assets`, `alr.config`, `alr.model`, `alr.importance`, `alr.methods`.
"""
