"""Code shape: every function in alr/ fits on one screen (at most 60 lines, `def` to last line)."""

import ast

from tests.tiny import REPO

MAX_LINES = 60


def long_functions(root=REPO / "alr", limit=MAX_LINES) -> list[str]:
    """`path:line name (n lines)` of each function or method under `root` longer than `limit` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_is_longer_than_60_lines():
    too_long = long_functions()
    assert not too_long, f"split these into helpers of at most {MAX_LINES} lines:\n" + "\n".join(too_long)


def test_the_check_finds_a_long_function(tmp_path):
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def short():\n    pass\n\n\nclass C:\n    def long(self):\n{body}")
    assert [line.split(" ", 1)[1] for line in long_functions(tmp_path)] == [f"long ({MAX_LINES + 1} lines)"]
