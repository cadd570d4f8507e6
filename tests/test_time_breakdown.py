"""benchmarks/time_breakdown.py on a made-up run folder: each benchmark record finds the file its job wrote,
and the rows group jobs by what sets their cost."""

import json

from benchmarks.time_breakdown import main, rows, table

MODEL = "m"


def _job(work, rule: str, rel: str, seconds: float, own: str | None, own_s: float, **record) -> None:
    tsv = work / "logs" / "benchmarks" / rule / MODEL / rel
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:{int(seconds)}\t100\n")
    if own:
        path = work / "results" / MODEL / own
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"wall_time_s": own_s, **record}))


def test_rows_pair_each_job_with_its_own_timer(tmp_path):
    _job(tmp_path, "finetune", "icd10/kl_lora-w0.1/seed0.tsv", 100.0, "icd10/kl_lora-w0.1/seed0/train.json", 90.0)
    _job(tmp_path, "finetune", "icd10/kl_lora-w1/seed0.tsv", 120.0, "icd10/kl_lora-w1/seed0/train.json", 110.0)
    _job(tmp_path, "evaluate", "science/lora/seed0.valid.tsv", 30.0, "science/lora/seed0/valid.json", 25.0)
    _job(tmp_path, "evaluate", "base.eval.tsv", 50.0, "base/eval.json", 44.0)
    _job(tmp_path, "importance", "seed1/si.tsv", 60.0, "importance/seed1/si.json", 55.0)
    _job(tmp_path, "importance", "fisher.tsv", 40.0, None, 0.0)  # its sidecar is missing: no own time
    sweep = "science/alr-lambda4/seed0"  # a selected sweep point: its general tasks apart
    _job(tmp_path, "evaluate", f"{sweep}.eval.tsv", 70.0, f"{sweep}/eval.json", 62.0, general_tasks="skip")
    _job(
        tmp_path,
        "evaluate",
        f"{sweep}.eval_general.tsv",
        90.0,
        f"{sweep}/eval_general.json",
        81.0,
        general_tasks="only",
    )
    got = {(r["kind"], r["job_s"], r["compute_s"]) for r in rows(tmp_path) if r["compute_s"] == r["compute_s"]}
    assert got == {
        ("finetune (icd10, kl_lora)", 100.0, 90.0),
        ("finetune (icd10, kl_lora)", 120.0, 110.0),
        ("evaluate (valid, science)", 30.0, 25.0),
        ("evaluate (test, base)", 50.0, 44.0),
        ("evaluate (test without general tasks, science)", 70.0, 62.0),
        ("evaluate (general tasks alone, science)", 90.0, 81.0),
        ("importance", 60.0, 55.0),
    }
    lines = table(rows(tmp_path)).splitlines()
    assert "| finetune (icd10, kl_lora) | 2 | 220 | 110.0 | 100.0 | 10.0 |" in lines
    assert lines[-1] == "| all benchmarked jobs | 8 | 560 | | | |"


def test_a_folder_without_records_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "run the pipeline first" in capsys.readouterr().err
