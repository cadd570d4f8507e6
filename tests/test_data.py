"""Dataset building: canonical schema, fixed-seed shuffling, disjoint splits, sizes."""

import random
from collections import Counter

import pytest

from alr.assets.build import build_all
from alr.assets.catalogue import data_in_use
from alr.assets.sources.generated import elements_mc, icd10cm_mc, member_questions
from alr.assets.splits import shuffle_choices, split_items
from alr.core.examples import DataError, mc_to_pair, read_records, tokenize_pairs
from alr.core.io import read_json


@pytest.fixture
def built(tiny_cfg, tiny_data):
    """The session's tiny datasets, the config they were built from and their manifest."""
    return tiny_cfg, tiny_data, read_json(tiny_data / "manifest.json")


def test_every_split_is_canonical_and_sized(built):
    cfg, out, manifest = built
    for name in cfg["data"]["general"]["tasks"]:  # nothing trains on a general task: test items only
        test = read_records(out / name / "test.jsonl", "mc")
        assert len(test) == manifest["datasets"][name]["splits"]["test"]["n"] == cfg["data"]["test_size"]
        assert list(manifest["datasets"][name]["splits"]) == ["test"] and not (out / name / "train.jsonl").exists()
    for name in cfg["data"]["domains"]:
        sizes = {split: len(read_records(out / name / f"{split}.jsonl", "mc")) for split in ("test", "valid", "train")}
        assert sizes["test"] == cfg["data"]["test_size"] and sizes["valid"] == cfg["data"]["valid_size"]
        assert 0 < sizes["train"] <= cfg["data"]["train_size"]
    text_cfg = cfg["data"]["general"]["text"]
    for split in ("test", "valid", "train"):
        rows = read_records(out / "general_text" / f"{split}.jsonl", "text")
        counts = Counter(r["source"] for r in rows)
        wanted = {
            src: spec.get(f"{split}_size", text_cfg[f"{split}_size"]) for src, spec in text_cfg["sources"].items()
        }
        assert dict(counts) == {src: n for src, n in wanted.items() if n}, split  # narrative: train_size 0
        assert manifest["datasets"]["general_text"]["splits"][split]["sources"] == {**wanted, **counts}


def test_train_valid_and_test_never_share_a_question(built):
    cfg, out, _ = built
    for name in cfg["data"]["domains"]:
        seen = [
            {r["question"] for r in read_records(out / name / f"{split}.jsonl")} for split in ("test", "valid", "train")
        ]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2]), name


def test_general_data_consumers_never_read_an_evaluated_text(built):
    """Content-hash disjointness: every text a general-data consumer reads (phase 1, Fisher and MAS
    through `_general_text`, replay through `_train_files`, kl_lora through `general_features`) is in
    no evaluation set: not the general NLL's test texts, not the selection's valid texts, not any test
    or valid item of a task."""
    from alr.assets.general_text import content_key
    from alr.finetune.run import _train_files
    from alr.importance.record import _general_text
    from alr.methods.kl import general_features

    def byte_tokenizer(text, add_special_tokens=False):  # tokens that decode back to the text itself
        return {"input_ids": list(text.encode())}

    cfg, out, _ = built
    consumed = [r["text"] for r in _general_text(out, 10_000)]  # phase-1 SI, the Fisher, MAS
    consumed += [r["text"] for r in read_records(_train_files(out, "science", replay=True)[1], "text")]  # replay
    consumed += [bytes(ids).decode() for ids in general_features(out, byte_tokenizer, 10_000, 10**6)]  # kl_lora
    consumed_keys = {content_key(t) for t in consumed}
    assert len(consumed_keys) == len(read_records(out / "general_text" / "train.jsonl"))
    evaluated = [
        r["text"] for split in ("test", "valid") for r in read_records(out / "general_text" / f"{split}.jsonl")
    ]
    for name in [*cfg["data"]["general"]["tasks"], *cfg["data"]["domains"]]:
        for split in ("test", "valid"):
            if (out / name / f"{split}.jsonl").exists():
                evaluated += [mc_to_pair(r)[0] + mc_to_pair(r)[1] for r in read_records(out / name / f"{split}.jsonl")]
                evaluated += [r["question"] for r in read_records(out / name / f"{split}.jsonl")]
    assert not consumed_keys & {content_key(t) for t in evaluated}


def test_a_text_in_two_sources_is_kept_once(tiny_cfg, tmp_path):
    """The fixture repeats an encyclopedic passage in the how-to file (upper case, extra spaces): the
    content key folds case and spacing, so only the first copy survives (sources go by name: the
    encyclopedic one); the how-to template keeps WikiHow contexts only, with their markup removed."""
    from alr.assets.general_text import content_key, split_sources
    from alr.assets.sources.kinds import Sources

    text_cfg = dict(tiny_cfg["data"]["general"]["text"], train_size=1000)  # every text lands in a split
    text_cfg["sources"] = {n: {k: v for k, v in s.items() if k != "train_size"} for n, s in text_cfg["sources"].items()}
    texts_of = Sources(tiny_cfg["data"], tmp_path).texts
    rows = [r for split in split_sources(text_cfg, texts_of, lambda src: random.Random(0)).values() for r in split]
    assert len({content_key(r["text"]) for r in rows}) == len(rows)
    # narrative: 24 passages and 24 more that quote a science question (no task items given here)
    assert Counter(r["source"] for r in rows) == {"encyclopedic": 24, "howto": 24, "narrative": 48}
    assert not any(r["text"].isupper() for r in rows)
    howto = [r["text"] for r in rows if r["source"] == "howto"]
    assert all(t.startswith("How to ") and "[" not in t for t in howto) and not any("roof" in t for t in howto)


def test_no_general_text_is_a_task_item_or_holds_ones_question(built):
    """Every general text of every split, against every item the build wrote (domains' train, valid
    and test, general tasks' test): no text is an item, nor the context of one. The fixture's
    narrative source quotes each science question in a passage of its own, so this needs the filter."""
    from alr.assets.general_text import TaskContexts

    cfg, out, manifest = built
    items = [
        r
        for name in [*cfg["data"]["general"]["tasks"], *cfg["data"]["domains"]]
        for split in manifest["datasets"][name]["splits"]
        for r in read_records(out / name / f"{split}.jsonl")
    ]
    tasks = TaskContexts(items)
    texts = [r for split in ("test", "valid", "train") for r in read_records(out / "general_text" / f"{split}.jsonl")]
    assert not [r["id"] for r in texts if r["text"] in tasks]


def test_task_contexts_drop_items_and_texts_quoting_them():
    from alr.assets.general_text import CONTEXT_MIN_CHARS, TaskContexts, split_sources

    long_q = "Which gas do plants take in from the air to make their food?"
    short_q = "To make tea,"
    assert len(short_q) < CONTEXT_MIN_CHARS <= len(long_q)
    tasks = TaskContexts(
        [
            {"question": long_q, "choices": ["oxygen", "carbon dioxide"], "label": 1},
            {"question": short_q, "choices": ["boil water", "freeze water"], "label": 0},
        ]
    )
    texts = [
        f"{long_q} carbon dioxide",
        f"The teacher asked: {long_q.upper()}  Nobody knew.",
        "To make tea, boil the water first and wait.",
        "Rivers run to the sea.",
        "Cats sleep a lot.",
    ]
    assert [t in tasks for t in texts] == [True, True, False, False, False]
    text_cfg = {
        "test_size": 1,
        "valid_size": 1,
        "train_size": 1,
        "max_chars": 500,
        "sources": {"mixed": {"source": "inline"}},
    }
    parts = split_sources(text_cfg, lambda src, spec: texts, lambda src: random.Random(0), tasks)
    assert sorted(r["text"] for split in parts.values() for r in split) == sorted(texts[2:])


def test_gold_is_no_longer_always_first(built):
    # SciQ lists the correct answer before its distractors (doc_to_target: 0), as the real file does
    _, out, _ = built
    labels = [r["label"] for r in read_records(out / "science" / "train.jsonl")]
    assert len(set(labels)) > 1
    science = read_records(out / "science" / "test.jsonl")
    assert all(r["question"].startswith("What ") and "support" not in r["question"] for r in science)


def test_build_is_deterministic(built, tmp_path):
    cfg, out, manifest = built
    cfg = dict(cfg, data=data_in_use(cfg))
    again = build_all(cfg["data"], tmp_path / "again")
    assert again == manifest
    other = dict(cfg["data"], seed=cfg["data"]["seed"] + 1)
    text = cfg["data"]["general"]["text"]
    reordered = dict(
        cfg["data"],
        general=dict(cfg["data"]["general"], text=dict(text, sources=dict(reversed(text["sources"].items())))),
    )
    assert build_all(reordered, tmp_path / "reordered") == manifest
    changed = build_all(other, tmp_path / "other")
    assert (
        changed["datasets"]["science"]["splits"]["test"]["sha256"]
        != manifest["datasets"]["science"]["splits"]["test"]["sha256"]
    )


def test_shuffle_keeps_gold_and_caps_choices():
    rows = [{"id": str(i), "question": f"q{i}", "choices": [f"c{k}" for k in range(10)], "label": 0} for i in range(50)]
    out = shuffle_choices(rows, random.Random(0), max_choices=4)
    assert all(len(r["choices"]) == 4 and r["choices"][r["label"]] == "c0" for r in out)
    assert Counter(r["label"] for r in out).keys() == {0, 1, 2, 3}


def test_split_dedupes_and_caps_test_at_half():
    rows = [{"id": str(i), "question": f"q{i % 10}", "choices": ["a", "b"], "label": 0} for i in range(30)]
    splits = split_items(rows, random.Random(0), test_size=100, train_size=100)
    assert len(splits["test"]) == 5 and len(splits["train"]) == 5


def test_member_questions_draw_every_choice_from_their_own_split():
    names = ["hydrogen"] + [f"element{z}" for z in range(2, 119)]
    rows = elements_mc(names, 4, seed=0)
    assert len(rows) == 101  # polonium, astatine and Z >= 104 have no agreed family
    rng = random.Random(0)
    splits = split_items(shuffle_choices(rows, rng), rng, test_size=40, train_size=64, valid_size=16)
    family_of = {r["group"]: r["choices"][r["label"]] for r in rows}
    for items in splits.values():
        members = member_questions(items, rng, 4)
        own = {r["group"] for r in items}
        assert {r["group"] for r in members} == own
        for r in members:
            assert set(r["choices"]) <= own and r["choices"][r["label"]] == r["group"]
            families = [family_of[c] for c in r["choices"]]
            assert len(set(families)) == 4 and family_of[r["group"]] in r["question"]
        assert (
            Counter(r["label"] for r in members).keys() <= {0, 1, 2, 3}
            and len(Counter(r["label"] for r in members)) > 1
        )
    few = [r for r in rows if r["choices"][r["label"]] in ("halogen", "noble gas")]  # two families only
    with pytest.raises(ValueError, match="families"):
        member_questions(few, rng, 4)


def test_icd10cm_items_are_real_and_balanced():
    import simple_icd_10_cm as cm

    rows = icd10cm_mc(40, 4, seed=3)
    assert len({r["id"] for r in rows}) == 40
    for r in rows:
        code = r["id"].removeprefix("icd10cm-")
        assert cm.is_valid_item(code)
        assert cm.get_description(code) in r["question"]
        assert len(set(r["choices"])) == 4
    assert icd10cm_mc(40, 4, seed=3) == rows


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "not valid JSON"),
        ('{"id": "a", "question": "q", "choices": ["x", "y"], "label": 2}', "label 2 out of range"),
        ('{"id": "a", "question": "q", "choices": ["x"], "label": 0}', "at least two"),
        ('{"id": "a", "choices": ["x", "y"], "label": 0}', "'question'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = '{"id": "g", "question": "q", "choices": ["x", "y"], "label": 1}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=message) as info:
        read_records(path)
    assert f"{path}:2" in str(info.value)


def test_empty_split_and_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        read_records(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="prepare-data"):
        read_records(tmp_path / "missing.jsonl")


def test_answer_only_loss_masks_prompt_and_keeps_answer():
    class WordTok:
        eos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [len(w) for w in text.split()]}

    rec = {"id": "x", "question": "one two three four five six", "choices": ["no", "yes sir"], "label": 1}
    (feat,) = tokenize_pairs([mc_to_pair(rec)], WordTok(), max_length=6)
    assert feat["labels"][-3:] == [3, 3, 0] and all(x == -100 for x in feat["labels"][:-3])
    assert len(feat["input_ids"]) == 6 and feat["input_ids"][-3:] == [3, 3, 0]
    (full,) = tokenize_pairs([mc_to_pair(rec)], WordTok(), max_length=64, loss_on="all")
    assert full["labels"] == full["input_ids"]


def test_a_new_source_kind_is_one_registered_reader(tiny_cfg, tmp_path):
    """A source kind registered from outside alr (here, this test module) builds a dataset through the
    unchanged builder: no existing function names the kinds one by one."""
    from alr.assets.sources.kinds import SOURCE_KINDS, SourceKind, register

    def counting(sources, name, spec, seed):
        return [
            {"id": f"{name}-{i}", "question": f"What follows {i}?", "choices": [str(i + 1), str(i + 2)], "label": 0}
            for i in range(spec["n_items"])
        ]

    register(SourceKind("counting", mc_rows=counting))
    try:
        data = dict(tiny_cfg["data"])
        data["domains"] = {**data["domains"], "arithmetic": {"source": "counting", "n_items": 30}}
        manifest = build_all(data, tmp_path / "data", tmp_path / "downloads")
    finally:
        SOURCE_KINDS.pop("counting")
    assert manifest["datasets"]["arithmetic"]["source"] == "counting"
    test = read_records(tmp_path / "data" / "arithmetic" / "test.jsonl", "mc")
    assert len(test) == data["test_size"] and all(r["id"].startswith("arithmetic-") for r in test)


def test_an_unregistered_source_kind_names_the_registered_ones(tiny_cfg, tmp_path):
    from alr.assets.sources.kinds import Sources

    with pytest.raises(ValueError, match=r"data: x: unknown source 'nowhere' \(registered: bigbench, .*registry"):
        Sources(tiny_cfg["data"], tmp_path).mc_rows("x", {"source": "nowhere"}, 0)
