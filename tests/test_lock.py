"""requirements.lock: it pins pyproject.toml's own pins at their versions, every package once with its sha256
hashes, and not torch; the running environment matches it; tools/lock.py (`make lock`) on made-up reports."""

import importlib.metadata
import json
import re
import tomllib

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.tiny import REPO
from tools import lock as locktool

LOCK = REPO / "requirements.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def read_lock(text: str) -> list[tuple[str, str, list[str]]]:
    """(name as written, version, options) of each requirement, continuation lines joined."""
    entries = []
    for line in text.replace("\\\n", " ").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *options = line.split()
        name, sep, version = requirement.partition("==")
        assert sep, f"not pinned with ==: {requirement}"
        entries.append((name, version, options))
    return entries


ENTRIES = read_lock(LOCK.read_text())
LOCKED = {canonicalize_name(name): version for name, version, _ in ENTRIES}


def pyproject_pins() -> dict[str, str]:
    reqs = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"]
    pins = {}
    for line in reqs:
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_every_pin_of_pyproject_is_locked_at_its_version():
    pins = {name: version for name, version in pyproject_pins().items() if name != "torch"}
    assert len(pins) > 10  # the pins were read
    assert {name: LOCKED.get(name) for name in pins} == pins


def test_torch_and_what_it_pins_exactly_are_left_out():
    assert "torch" in pyproject_pins()
    assert not [name for name in LOCKED if name == "torch" or name.startswith(("nvidia-", "triton"))]


def test_no_package_is_locked_twice_and_names_are_canonical():
    names = [name for name, _, _ in ENTRIES]
    assert len(names) == len(set(LOCKED)) > 100
    assert names == sorted(canonicalize_name(n) for n in names)


def test_every_locked_package_has_only_sha256_hashes():
    for name, version, options in ENTRIES:
        assert options and all(SHA256.fullmatch(o) for o in options), f"{name}=={version}: {options}"
        assert len(set(options)) == len(options), name


def test_every_locked_version_is_a_release():
    assert not [f"{n}=={v}" for n, v in LOCKED.items() if Version(v).local or Version(v).is_devrelease]


def installed_report() -> dict:
    """The running environment as tools/lock.py reads a pip report: each distribution's metadata, and the
    project with its `test` extra requested."""
    items = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        items.setdefault(name, {"metadata": {"name": name, "version": dist.version, "requires_dist": dist.requires}})
    for item in items.values():
        item["metadata"]["requires_dist"] = item["metadata"]["requires_dist"] or []
    if "alr" not in items:
        pytest.skip("alr is not installed in this environment (make installs it)")
    items["alr"]["requested_extras"] = ["test"]
    return {"install": list(items.values()), "environment": default_environment()}


def test_the_environment_has_every_locked_version():
    stale = {}
    for name, version in LOCKED.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or Version(installed) != Version(version):
            stale[name] = f"{installed} installed, {version} locked"
    assert not stale, f"this environment is not requirements.lock (`make` reinstalls .venv from it): {stale}"


def test_everything_the_project_requires_here_is_locked():
    """What the installed alr[test] reaches (torch's exact pins aside) is the lock's set: nothing floats."""
    assert set(locktool.locked_names(installed_report(), "alr")) == set(LOCKED)


# tools/lock.py on made-up reports and index pages.


def item(name, version, *requires, extras=None, url=None, sha="0" * 64):
    found = {
        "metadata": {"name": name, "version": version, "requires_dist": list(requires)},
        "download_info": {"url": url or f"https://files.example/{name}-{version}.tar.gz"},
    }
    found["download_info"]["archive_info"] = {"hashes": {"sha256": sha}}
    if extras:
        found["requested_extras"] = extras
    return found


LINUX = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11", "platform_machine": "x86_64"}
LINUX |= {"python_full_version": "3.11.7", "implementation_name": "cpython", "os_name": "posix"}


def report(*items) -> dict:
    return {"install": list(items), "environment": LINUX, "pip_version": "26.3"}


def made_up_report() -> dict:
    return report(
        item("alr", "0.1.0", "torch==2.13.0", "Numpy==2.4.6", 'pytest==9.2.0; extra == "test"', extras=["test"]),
        item("torch", "2.13.0", "sympy>=1.13", 'nvidia-cublas==13.1; platform_system == "Linux"', "filelock"),
        item("nvidia-cublas", "13.1", "nvidia-cuda-runtime", "filelock"),
        item("nvidia-cuda-runtime", "13.0"),
        item("sympy", "1.14.0", "mpmath<1.4", 'pywin32; sys_platform == "win32"'),
        item("mpmath", "1.3.0"),
        item("filelock", "4.3.2"),
        item("numpy", "2.4.6"),
        item("pytest", "9.2.0", 'pluggy[dev]>=1.5; python_version >= "3.9"', 'colorama; sys_platform == "win32"'),
        item("pluggy", "1.7.0", 'tox; extra == "dev"', 'pre-commit; extra == "testing"'),
        item("tox", "4.0"),
    )


def test_locked_names_follow_markers_and_extras_and_leave_torchs_exact_pins_to_torch():
    names = locktool.locked_names(made_up_report(), "alr")
    assert names == ["filelock", "mpmath", "numpy", "pluggy", "pytest", "sympy", "tox"]


def test_locked_names_refuse_a_requirement_missing_from_the_report():
    broken = report(item("alr", "0.1.0", "numpy"))
    with pytest.raises(locktool.LockError, match="numpy"):
        locktool.locked_names(broken, "alr")


@pytest.mark.parametrize(
    "filename, ok",
    [
        ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", True),
        ("numpy-2.4.6-cp312-cp312-macosx_14_0_arm64.whl", True),
        ("numpy-2.4.6-cp312-cp312-win_amd64.whl", True),
        ("numpy-2.4.6-cp313-cp313-manylinux_2_28_x86_64.whl", False),
        ("numpy-2.4.6-cp313-cp313t-manylinux_2_28_x86_64.whl", False),
        ("numpy-2.4.6-cp310-cp310-manylinux_2_28_x86_64.whl", False),
        ("numpy-2.4.6-pp311-pypy311_pp73-manylinux_2_28_x86_64.whl", False),
        ("numpy-2.4.6-cp310-abi3-manylinux_2_17_x86_64.whl", True),
        ("numpy-2.4.6-cp313-abi3-manylinux_2_17_x86_64.whl", False),
        ("numpy-2.4.6-py3-none-any.whl", True),
        ("numpy-2.4.6-py2.py3-none-any.whl", True),
        ("numpy-2.4.6-py313-none-any.whl", False),
        ("numpy-2.4.6.tar.gz", True),
        ("numpy-2.4.5.tar.gz", False),
        ("numpy-2.4.5-py3-none-any.whl", False),
        ("numpy-2.4.6.exe", False),
    ],
)
def test_installable_files_are_those_of_the_version_for_cpython_311_or_312(filename, ok):
    assert locktool.installable(filename, Version("2.4.6"), locktool.python_minors(">=3.11,<3.13")) is ok


def test_parse_simple_reads_pep_691_json_and_pep_503_html():
    page = {"files": [{"filename": "a-1.0.tar.gz", "hashes": {"sha256": "ab" * 32}}, {"filename": "x", "hashes": {}}]}
    assert locktool.parse_simple(json.dumps(page).encode(), locktool.SIMPLE_JSON) == [("a-1.0.tar.gz", "ab" * 32)]
    html = b'<a href="../../f/a-1.0-py3-none-any.whl#sha256=' + b"cd" * 32 + b'">w</a><a href="a-0.9.tar.gz">s</a>'
    assert locktool.parse_simple(html, "text/html") == [("a-1.0-py3-none-any.whl", "cd" * 32)]


def fake_index(served: dict[str, list[tuple[str, str]]]):
    return lambda index, name: served.get(name, [])


PYPROJECT_SMALL = {"project": {"name": "alr", "requires-python": ">=3.11,<3.13", "dependencies": ["torch==2.13.0"]}}


def test_lock_writes_each_package_with_the_hashes_of_its_installable_files(capsys):
    small = report(
        item("alr", "0.1.0", "torch==2.13.0", "numpy==2.4.6"),
        item("torch", "2.13.0+cpu", "filelock"),
        item("numpy", "2.4.6", sha="1" * 64),
        item("filelock", "4.3.2", sha="f" * 64),
    )
    served = {
        "numpy": [
            ("numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "1" * 64),
            ("numpy-2.4.6-cp312-cp312-win_amd64.whl", "2" * 64),
            ("numpy-2.4.6-cp313-cp313-win_amd64.whl", "3" * 64),
            ("numpy-2.4.5-cp311-cp311-manylinux_2_28_x86_64.whl", "4" * 64),
        ],
        "filelock": [("filelock-4.3.2-py3-none-any.whl", "5" * 64), ("filelock-4.3.2.tar.gz", "6" * 64)],
    }
    text = locktool.lock(small, PYPROJECT_SMALL, "https://index.example/simple", fetch=fake_index(served))
    assert read_lock(text) == [
        ("filelock", "4.3.2", [f"--hash=sha256:{'5' * 64}", f"--hash=sha256:{'6' * 64}"]),
        ("numpy", "2.4.6", [f"--hash=sha256:{'1' * 64}", f"--hash=sha256:{'2' * 64}"]),
    ]
    assert "torch==2.13.0" in text and "make lock" in text
    # pip picked a filelock file here that the index does not serve (a local mirror's own build): said, not fatal
    assert capsys.readouterr().err.strip() == (
        "lock: filelock==4.3.2: pip picked https://files.example/filelock-4.3.2.tar.gz here, "
        "not a file of https://index.example/simple"
    )


def test_lock_refuses_a_version_the_index_does_not_serve():
    small = report(
        item("alr", "0.1.0", "torch==2.13.0", "numpy==2.4.6"), item("torch", "2.13.0"), item("numpy", "2.4.6")
    )
    served = {"numpy": [("numpy-2.4.5.tar.gz", "1" * 64), ("numpy-2.4.6-cp313-cp313-win_amd64.whl", "2" * 64)]}
    with pytest.raises(locktool.LockError, match=r"numpy==2\.4\.6 that CPython 3\.11, 3\.12"):
        locktool.lock(small, PYPROJECT_SMALL, "https://index.example/simple", fetch=fake_index(served))
