"""A sweep point's eval.json and its general tasks scored apart (eval_general.json), as the reports read
them: merged only when both scored the same weights."""

from alr.core.io import write_json, write_jsonl
from alr.evaluate.records import read_eval, read_eval_items, scores_general_tasks


def _record(folder, name: str, mode: str, weights: str, tasks: dict, general: dict, items: list[dict]) -> None:
    write_json(
        folder / f"{name}.json", {"general_tasks": mode, "weights_sha256": weights, "tasks": tasks, "general": general}
    )
    write_jsonl(folder / f"{name}_items.jsonl.gz", items, compress=True)


def _sweep_point(folder, apart_weights: str) -> None:
    domain = {"task": "science", "id": "q1", "acc": 1.0}
    _record(folder, "eval", "skip", "aaa", {"science": {"score": 1.0}}, {"tasks": [], "nll": 2.5}, [domain])
    general = {"tasks": ["arc"], "score": 0.4, "stderr": 0.1}
    _record(
        folder,
        "eval_general",
        "only",
        apart_weights,
        {"arc": {"score": 0.4}},
        general,
        [{"task": "arc", "id": "a1", "acc": 0.0}],
    )


def test_general_tasks_apart_are_merged_for_the_same_weights(tmp_path):
    _sweep_point(tmp_path, "aaa")
    merged = read_eval(tmp_path / "eval.json")
    assert scores_general_tasks(merged) and merged["general_tasks"] == "score"
    assert set(merged["tasks"]) == {"science", "arc"}
    assert merged["general"] == {"tasks": ["arc"], "nll": 2.5, "score": 0.4, "stderr": 0.1}
    assert set(read_eval_items(tmp_path / "eval.json")) == {("science", "q1"), ("arc", "a1")}


def test_general_tasks_of_other_weights_are_not_merged(tmp_path):
    _sweep_point(tmp_path, "bbb")  # left by an earlier fine-tune of this strength
    alone = read_eval(tmp_path / "eval.json")
    assert not scores_general_tasks(alone) and set(alone["tasks"]) == {"science"}
    assert set(read_eval_items(tmp_path / "eval.json")) == {("science", "q1")}


def test_a_whole_pass_reads_as_written(tmp_path):
    _sweep_point(tmp_path, "aaa")
    write_json(tmp_path / "eval.json", {"general_tasks": "score", "tasks": {}, "general": {"tasks": ["arc"]}})
    assert read_eval(tmp_path / "eval.json")["tasks"] == {}  # eval_general.json beside it is not read
