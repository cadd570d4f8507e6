"""Stage `importance` (workflow/rules/importance.smk), phase 1: the importance estimators (SI, Fisher,
MAS) registered in `estimators`, their recorders (`record`) and the importance file (`store`).

May import: `alr.core`, `alr.assets`, `alr.config`, `alr.model`.
"""
