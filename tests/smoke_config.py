"""Write the tiny configuration (random Llama, miniature BIG-bench archive) into a folder, so the
README's `make run` recipe can be run end to end in a minute: `make smoke` (CI) does

    python -m tests.smoke_config DIR    # writes DIR/tiny.yaml and the assets it points to
    make run CONFIG=DIR/tiny.yaml ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tests.tiny import tiny_config


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.smoke_config DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0]).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(folder), sort_keys=False))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
