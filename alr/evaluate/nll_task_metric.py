"""lm-eval's per-document hook of the task `alr_general_nll` (`alr tasks --model-dir` copies this file
beside the task YAML, where lm-eval's `!function` looks for it; it imports nothing from alr).

A document's `nll` is minus its rolling log-likelihood over its token count (nats per token), so the
task's mean is alr's general NLL.
"""


def process_results(doc: dict, results: list) -> dict:
    (loglikelihood,) = results
    return {"nll": -loglikelihood / doc["tokens"]}
