"""The verification snippets of docs/receiving.md, run as a tracker would run them.

The code is read from the page itself (each block follows a `<!-- snippet: LANGUAGE -->` line),
so the page cannot drift from what is tested. `run_snippet(language, cases)` runs the snippet's
function on every case in one process of that language and returns its answers:

    case = {"target": "/cb?...&sig=...", "secrets": ["pbsec_..."], "now": 1795998367, "param": "ts"}

`now` None means the receiver's own clock. Python and Node are required (Node is on the test
machines); PHP runs only where `php` is installed (`php_available()`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECEIVING = ROOT / "docs" / "receiving.md"
VECTORS = ROOT / "docs" / "signature-vectors.json"
_SNIPPET = re.compile(r"<!-- snippet: (\w+) -->\n```\w+\n(.*?)\n```", re.DOTALL)
TIMEOUT_SECONDS = 60

_PYTHON_DRIVER = """
import json, sys
answers = []
for case in json.load(sys.stdin):
    answers.append(postback_is_authentic(case["target"], case["secrets"], case["now"], case["param"]))
print(json.dumps(answers))
"""

_NODE_DRIVER = """
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const answers = cases.map((c) =>
  c.now === null
    ? postbackIsAuthentic(c.target, c.secrets, undefined, c.param)
    : postbackIsAuthentic(c.target, c.secrets, c.now, c.param),
);
console.log(JSON.stringify(answers));
"""

_PHP_DRIVER = """
$cases = json_decode(file_get_contents('php://stdin'), true);
$answers = [];
foreach ($cases as $c) {
    $answers[] = postback_is_authentic($c['target'], $c['secrets'], $c['now'], $c['param']);
}
echo json_encode($answers), "\\n";
"""


def snippets() -> dict[str, str]:
    return dict(_SNIPPET.findall(RECEIVING.read_text(encoding="utf-8")))


def vectors() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    return loaded


def node_binary() -> str | None:
    return shutil.which("node")


def php_available() -> bool:
    return shutil.which("php") is not None


def _command(language: str, code: str) -> list[str]:
    if language == "python":
        return [sys.executable, "-c", code + "\n" + _PYTHON_DRIVER]
    if language == "node":
        node = node_binary()
        if node is None:
            raise RuntimeError("node is not installed: the Node snippet of docs/receiving.md cannot be tested")
        return [node, "-e", code + "\n" + _NODE_DRIVER]
    if language == "php":
        return ["php", "-r", code.removeprefix("<?php").strip() + "\n" + _PHP_DRIVER]
    raise ValueError(f"no snippet runner for {language!r}")


def run_snippet(language: str, cases: list[dict[str, Any]]) -> list[bool]:
    code = snippets()[language]
    done = subprocess.run(
        _command(language, code),
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{language} snippet failed ({done.returncode}): {done.stderr}")
    answers: list[bool] = json.loads(done.stdout)
    return answers


def vector_cases() -> tuple[list[dict[str, Any]], list[bool]]:
    """Cases built from the vectors, with the answer a correct receiver gives to each."""
    cases: list[dict[str, Any]] = []
    expected: list[bool] = []
    other = "pbsec_" + "x" * 43

    def add(target: str, secrets: list[str], now: int, param: str, answer: bool) -> None:
        cases.append({"target": target, "secrets": secrets, "now": now, "param": param})
        expected.append(answer)

    for vector in vectors():
        target, secret, now, param = (
            vector["target"],
            vector["secret"],
            vector["timestamp"],
            vector["timestamp_parameter"],
        )
        add(target, [secret], now, param, True)
        add(target, [secret], now + 300, param, True)  # at the edge of the window
        add(target, [other], now, param, False)  # wrong secret
        add(target, [other, secret], now, param, True)  # rotation: old and new both accepted
        add(target, [secret], now + 301, param, False)  # stale
        add(target, [secret], now - 301, param, False)  # from the future
        tampered = target.replace(str(now), str(now + 1), 1)
        add(tampered, [secret], now, param, False)  # the timestamp was changed
        add(target[:-1] + ("A" if target[-1] != "A" else "B"), [secret], now, param, False)  # the signature
        add(target.replace("?", "?x=1&", 1), [secret], now, param, False)  # a parameter was added
    return cases, expected
