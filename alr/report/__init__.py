"""Stage `report` (workflow/rules/report.smk): the tables, the claims scorecard and the figures, read
from the eval records (`alr.evaluate.records`).

- `comparisons`, `stats`: paired comparisons of runs and their intervals;
- `tables`, `general_tasks`, `efficiency`, `ablation`, `matched`, `selection`: the tables;
- `protocol`, `claims`: the pre-registered rule and the scorecard;
- `figures`, `render`: figures and table files.

May import: `alr.core`, `alr.assets`, `alr.config`, `alr.model`, `alr.importance`, `alr.methods`,
`alr.evaluate`.
"""
