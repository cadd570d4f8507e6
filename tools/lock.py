"""Write requirements.lock from a pip resolver report: every package the project resolves to, at the version
pip chose, with the sha256 of each file the package index serves for that version (`make lock` runs this).

    pip install --dry-run --ignore-installed --report report.json -e '.[test]'
    python tools/lock.py report.json > requirements.lock

Left out: the project itself, torch, and whatever torch requires with an exact pin (the CUDA build's
nvidia-* and triton releases, and what they bring). torch stays with pyproject.toml's pin, so each machine
gets the build that fits it (CUDA or CPU), and its exact pins come with it; torch's other requirements
(sympy, networkx, filelock, ...) are locked like everything else.

The hashes are those the index (pip's `index-url`, else PyPI) lists for the locked version: every sdist
and every wheel that a CPython allowed by pyproject's `requires-python` can install, on any platform, so
that hash checking passes wherever the version installs. The set of packages is the one pip resolved here
(the file's header names the Python and the platform); where markers pull in more, `make` installs those
unlocked and tests/test_lock.py names them. A file pip picked here that the index does not serve (a local
mirror's own build) is named on stderr: hash-checking installs take the index's files instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INDEX = "https://pypi.org/simple"
LEFT_TO_PIP = "torch"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


class LockError(RuntimeError):
    """The report cannot be locked (a package missing from the report, a version the index does not serve)."""


def is_exact(req: Requirement) -> bool:
    return any(s.operator in ("==", "===") and not s.version.endswith("*") for s in req.specifier)


def locked_names(report: dict, project: str, left_out: str = LEFT_TO_PIP) -> list[str]:
    """Canonical names of the packages to lock: all the root reaches in the report's dependency graph (markers
    evaluated in the report's environment, extras followed), less `left_out` and what it alone pins exactly."""
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    root = canonicalize_name(project)
    if root not in items:
        raise LockError(f"the report does not install {project}")
    env = report["environment"]
    extras = {root: set(items[root].get("requested_extras") or [])}
    todo, seen = [root], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        for line in items[name]["metadata"].get("requires_dist", []):
            req = Requirement(line)
            if name == left_out and is_exact(req):
                continue
            active = extras[name] | {""}
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in active):
                continue
            dep = canonicalize_name(req.name)
            if dep not in items:
                raise LockError(f"{name} requires {req}, which the report does not install")
            new = set(req.extras) - extras.setdefault(dep, set())
            if dep not in seen or new:
                extras[dep] |= new
                todo.append(dep)
    return sorted(seen - {root, canonicalize_name(left_out)})


def python_minors(requires_python: str, major: int = 3) -> list[int]:
    """The minor versions of CPython `major` that pyproject's requires-python allows (3.11, 3.12 -> [11, 12])."""
    spec = SpecifierSet(requires_python)
    return [m for m in range(40) if spec.contains(f"{major}.{m}")]


def installable(filename: str, version: Version, minors: list[int]) -> bool:
    """Whether `filename` is an sdist or a wheel of `version` that CPython 3.<m> (m in `minors`) can install."""
    try:
        if filename.endswith(".whl"):
            _, ver, _, tags = parse_wheel_filename(filename)
        else:
            _, ver = parse_sdist_filename(filename)
            tags = None
    except (ValueError, InvalidVersion):
        return False
    if ver != version:
        return False
    if tags is None:
        return True
    return any(_tag_fits(t.interpreter, t.abi, m) for t in tags for m in minors)


def _tag_fits(interpreter: str, abi: str, minor: int) -> bool:
    match = re.fullmatch(r"(py|cp)3(\d*)", interpreter)
    if not match:
        return False
    kind, wanted = match[1], int(match[2] or 0)
    if kind == "py":
        return wanted <= minor and abi == "none"
    if wanted == minor:
        return abi in (f"cp3{minor}", "abi3", "none")
    return wanted < minor and abi == "abi3"


class _Anchors(HTMLParser):
    """The href of every <a> of a PEP 503 page."""

    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def index_files(index: str, name: str) -> list[tuple[str, str]]:
    """(filename, sha256) of every file the index lists for `name`."""
    url = f"{index.rstrip('/')}/{name}/"
    request = urllib.request.Request(url, headers={"Accept": f"{SIMPLE_JSON}, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return parse_simple(resp.read(), resp.headers.get("Content-Type", ""))
    except OSError as exc:
        raise LockError(f"{url}: {exc}") from exc


def parse_simple(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """(filename, sha256) of each file of a project page: PEP 691 JSON, else PEP 503 HTML (`#sha256=` links)."""
    if SIMPLE_JSON in content_type:
        files = json.loads(body)["files"]
        return [(f["filename"], f["hashes"]["sha256"]) for f in files if f.get("hashes", {}).get("sha256")]
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    found = []
    for href in parser.hrefs:
        url, _, fragment = href.partition("#")
        if fragment.startswith("sha256="):
            found.append((urllib.request.unquote(url.rsplit("/", 1)[-1]), fragment.removeprefix("sha256=")))
    return found


def entry(name: str, version: str, files: list[tuple[str, str]], minors: list[int]) -> tuple[str, list[str]]:
    """`name==version` and the sorted hashes of its installable files; LockError if the index serves none."""
    wanted = Version(version)
    hashes = sorted({sha for filename, sha in files if installable(filename, wanted, minors)})
    if not hashes:
        pythons = ", ".join(f"3.{m}" for m in minors)
        raise LockError(f"the index serves no file of {name}=={version} that CPython {pythons} can install")
    return f"{name}=={version}", hashes


def render(entries: list[tuple[str, list[str]]], report: dict, minors: list[int], left_out: str) -> str:
    """The lock file: a header saying what it holds and how it is installed, then `name==version` lines, each
    followed by its `--hash` options (pip's continuation lines)."""
    env, pythons = report["environment"], " or ".join(f"3.{m}" for m in minors)
    head = [
        "# Every package that pyproject.toml's dependencies and its `test` extra resolve to, each with the sha256 of",
        f"# every file the index serves for that version to CPython {pythons} on any platform.",
        f"# Resolved by pip {report['pip_version']} on CPython {env['python_version']}, "
        f"{env['sys_platform']} {env['platform_machine']}. Regenerate with `make lock` (tools/lock.py).",
        "# `make` installs from it:",
        "#   pip install --require-hashes --no-deps -r requirements.lock",
        "#   pip install -e '.[test]'     (adds torch alone: everything else is installed)",
        "#   pip check",
        f"# Not here: {LEFT_TO_PIP}, pinned {left_out} by pyproject.toml so that each machine gets its build",
        f"# (CUDA, CPU) from its own index, and what {LEFT_TO_PIP} itself pins exactly (the CUDA build's nvidia-*",
        "# and triton releases).",
    ]
    body = [" \\\n".join([req, *(f"    --hash=sha256:{h}" for h in hashes)]) for req, hashes in entries]
    return "\n".join(head + body) + "\n"


def chosen_file(item: dict) -> tuple[str, str | None]:
    """The URL and sha256 of the file pip picked for a report item."""
    info = item["download_info"]
    archive = info.get("archive_info", {})
    sha = archive.get("hashes", {}).get("sha256") or (archive.get("hash", "").partition("=")[2] or None)
    return info["url"], sha


def primary_index() -> str:
    """pip's `index-url` (configuration or PIP_INDEX_URL), else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    urls = [
        v.strip("'\" ") for k, _, v in (line.partition("=") for line in out.splitlines()) if k.endswith(".index-url")
    ]
    return (urls or [DEFAULT_INDEX])[-1]


def lock(report: dict, pyproject: dict, index: str, fetch=index_files, jobs: int = 8) -> str:
    project = pyproject["project"]
    minors = python_minors(project["requires-python"])
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    names = locked_names(report, project["name"])
    with ThreadPoolExecutor(jobs) as pool:
        listings = dict(zip(names, pool.map(lambda n: fetch(index, n), names)))
    entries = []
    for name in names:
        version = items[name]["metadata"]["version"]
        requirement, hashes = entry(name, version, listings[name], minors)
        url, sha = chosen_file(items[name])
        if sha not in hashes:
            print(f"lock: {requirement}: pip picked {url} here, not a file of {index}", file=sys.stderr)
        entries.append((requirement, hashes))
    pin = next(d for d in project["dependencies"] if canonicalize_name(Requirement(d).name) == LEFT_TO_PIP)
    return render(entries, report, minors, str(Requirement(pin)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="pip install --dry-run --report output")
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    parser.add_argument("--index-url", help="index whose file hashes are recorded (default: pip's, else PyPI)")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    pyproject = tomllib.loads(args.pyproject.read_text())
    try:
        sys.stdout.write(lock(report, pyproject, args.index_url or primary_index()))
    except LockError as exc:
        print(f"lock: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
