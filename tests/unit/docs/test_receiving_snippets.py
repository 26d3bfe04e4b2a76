"""The verification snippets of docs/receiving.md against the known-answer vectors (docs/signature-vectors.json).

Each snippet is read from the page and run in its own language; each must accept every vector at
its timestamp and refuse it with a wrong secret, outside the clock-skew window or altered.
The same snippets verify real signed GETs of the local stack in tests/e2e/test_signed_postbacks.py.
"""

from __future__ import annotations

import pytest

from tests.support.receiving_snippets import node_binary, php_available, run_snippet, snippets, vector_cases

pytestmark = pytest.mark.unit


def test_the_page_has_a_python_a_node_and_a_php_snippet() -> None:
    assert set(snippets()) == {"python", "node", "php"}


def test_the_python_snippet_verifies_the_vectors() -> None:
    cases, expected = vector_cases()
    assert run_snippet("python", cases) == expected


def test_the_node_snippet_verifies_the_vectors() -> None:
    assert node_binary() is not None, "node is required to test docs/receiving.md (README, Requirements)"
    cases, expected = vector_cases()
    assert run_snippet("node", cases) == expected


@pytest.mark.skipif(not php_available(), reason="php is not installed; the PHP snippet is tested where it is")
def test_the_php_snippet_verifies_the_vectors() -> None:
    cases, expected = vector_cases()
    assert run_snippet("php", cases) == expected
