# alr: domain tuning that keeps general ability -- the benchmark workflow.
#
#   snakemake --cores all                                  # embedded default (config/config.yaml)
#   snakemake --cores all --configfile my.yaml             # your experiment (merged over the default)
#   snakemake -n                                           # plan only
#
# The DAG: prepare_model, prepare_data -> importance (phase 1, once per model) ->
#          finetune {domain x method x seed} -> evaluate -> tables, figures; report: snakemake --report.
# Every heavy step is one rule calling one `alr` subcommand; see docs/pipeline.md and docs/files.md.

import os

from snakemake.utils import min_version

from alr.config import workflow_config
from alr.core.errors import ConfigError

min_version("9.0")

# No `configfile:` directive: the user's config (--configfile, --config) goes over config/config.yaml
# here, unless it says `complete: true` (or --replace-workflow-config is given). A cluster job re-runs
# this file with the config files but without that flag, so the key in the file is what it reads.
try:  # Snakemake's own message for a YAML error names neither the file nor the line
    _run_config = workflow_config(dict(config), workflow.config_settings.replace_workflow_config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_run_config)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/importance.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
