"""Atomic file output: write to a temporary name beside the target, then rename into place.

A job killed half-way therefore never leaves a file (or directory) that looks complete to
Snakemake or to a later `alr` command. An output folder replaces an existing one only when that one
is empty or is the same command's earlier output (`check_replaceable`): no command deletes what it
did not create.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import ConfigError

# Beside the files of every folder atomic_dir writes: the command that wrote it and those files. Not
# a manifest a rule declares, because Snakemake deletes a rule's declared outputs before rerunning it.
OWNER_RECORD = ".alr-output.json"

_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_sibling(path: Path, directory: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        name = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(name, 0o777 & ~_UMASK)
        return Path(name)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the final file ordinary permissions
    return Path(name)


def _fsync(path: Path) -> None:
    """Flush a written file (every file under a folder) to the disk before it is renamed into place, so
    that after a crash the name a later job trusts never points at missing bytes; and give each the
    permissions of the umask, as `open` would: safetensors' `save_file` writes 0600, which hides the
    weights from the rest of a group sharing a results folder."""
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    for file in paths:
        os.chmod(file, 0o666 & ~_UMASK)
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path; on success it is flushed and renamed to `path`, on error removed."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _files_under(folder: Path) -> list[str]:
    """Every file and symbolic link under `folder` (relative, '/'-separated); links are not followed.
    A folder that cannot be listed is named itself, so that it never passes for empty."""
    found = []

    def unlisted(exc: OSError) -> None:
        found.append(Path(exc.filename).relative_to(folder).as_posix())

    for root, dirs, files in os.walk(folder, onerror=unlisted):
        rel = Path(root).relative_to(folder)
        found += [(rel / name).as_posix() for name in files]
        found += [(rel / name).as_posix() for name in dirs if (Path(root) / name).is_symlink()]
    return sorted(found)


def _owner_record(folder: Path) -> dict | None:
    """The ownership record of `folder` ({"kind", "files"}), or None when it has no well-formed one."""
    try:
        record = read_json(folder / OWNER_RECORD)
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and isinstance(record.get("kind"), str) and isinstance(record.get("files"), list):
        return record
    return None


def check_safetensors(path: str | os.PathLike, rebuild: str) -> None:
    """Refuse a .safetensors file that is truncated, padded or not one at all, from its header alone (no
    torch, no tensor read): 8 bytes of header length, the JSON header, then exactly the bytes its tensors'
    offsets describe. One line naming the file and `rebuild`, the command that writes it again."""
    path = Path(path)
    size = path.stat().st_size

    def refuse(why: str):
        return ConfigError(f"{path} is not a readable safetensors file ({why}); rebuild it with `{rebuild}`")

    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise refuse(f"{size} bytes, shorter than its header")
        length = int.from_bytes(head, "little")
        if length > size - 8:
            raise refuse("truncated: its header runs past the end of the file")
        try:
            header = json.loads(fh.read(length))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise refuse("its header is not valid") from None
    if 8 + length + end != size:
        raise refuse(f"truncated or padded: its header describes {8 + length + end:,} bytes, the file holds {size:,}")


def check_writable(path: str | os.PathLike, need_bytes: int = 0) -> None:
    """Before any compute: the folder that will receive `path` (its nearest existing ancestor) takes a new
    file, and holds at least `need_bytes` free. A probe file is created and removed, because permission
    bits do not tell (root passes them; a read-only mount does not)."""
    probe = Path(path).absolute()
    while not probe.is_dir():
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".alr-write-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ConfigError(
            f"cannot write under {probe}: {exc.strerror}; make it writable or point the output elsewhere"
        ) from None
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise ConfigError(
            f"{probe} has {free / 2**20:,.0f} MiB free and this job writes up to about {need_bytes / 2**20:,.0f} MiB; "
            "free some space or point the output elsewhere"
        )


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold `folder/.alr-lock` (an exclusive flock) while a command writes the folder, so two commands given
    the same --out refuse instead of interleaving; Snakemake's own lock covers only one workflow. The folder
    is created if missing and removed again if it is still empty on release (a refused job writes nothing)."""
    import fcntl

    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".alr-lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"{folder} is being written by another alr process (pid {holder}); wait for it to finish, "
                "or give this one another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if nothing else was written
    finally:
        os.close(fd)


def check_replaceable(path: str | os.PathLike, kind: str) -> None:
    """Refuse (ConfigError) an output folder that `alr <kind>` may not replace: anything but an absent
    or empty folder or that command's own earlier output with no file added since. Commands call it
    before any compute, so a wrong --out costs nothing; atomic_dir calls it again before the swap."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    fix = "alr replaces only an empty folder or its own output: choose another --out, or move that folder away"
    if path.is_symlink() or not path.is_dir():
        raise ConfigError(f"output folder {path} exists and is not a folder; {fix}")
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        raise ConfigError(f"output folder {path} is the working folder or holds it; {fix}")
    files = _files_under(path)
    record = _owner_record(path) if files else None
    if record is not None and record["kind"] != kind:
        owner = f"`alr {record['kind']}`"
        raise ConfigError(f"output folder {path} holds the output of {owner}, not of `alr {kind}`; {fix}")
    owned = {OWNER_RECORD, *map(str, record["files"])} if record else set()
    foreign = [f for f in files if f not in owned]
    if foreign:
        raise ConfigError(f"output folder {path} holds {foreign[0]}, which `alr {kind}` did not write; {fix}")


def _record_owner(folder: Path, kind: str) -> None:
    """What lets a later run of the same command replace `folder`, and nothing added to it since."""
    write_json(folder / OWNER_RECORD, {"kind": kind, "files": _files_under(folder)})


def _swap_in(new: Path, path: Path) -> None:
    """Rename `new` to `path`. An existing `path` is first renamed aside, and removed only once `new`
    is in place (renamed back if that fails): one complete folder is there at every moment."""
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    aside = path.with_name(f".{path.name}.{secrets.token_hex(8)}.old")
    os.rename(path, aside)
    try:
        os.rename(new, path)
    except BaseException:
        os.replace(aside, path)
        raise
    shutil.rmtree(aside)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, kind: str) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `path` as a whole, on error it is removed.

    `kind` is the command writing it: the folder records that command and its files (OWNER_RECORD),
    and an existing `path` is replaced only as check_replaceable allows."""
    path = Path(path)
    check_replaceable(path, kind)
    tmp = _tmp_sibling(path, directory=True)
    try:
        yield tmp
        _record_owner(tmp, kind)
        _fsync(tmp)
        check_replaceable(path, kind)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict], compress: bool = False) -> int:
    n = 0
    with atomic_path(path) as tmp:
        opener = gzip.open if compress else open
        with opener(tmp, "wt", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
