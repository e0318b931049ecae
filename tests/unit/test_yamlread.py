"""ingressd/yamlread.py: the fast YAML path gives exactly PyYAML's documents, or is not taken.

Differential: every text here is read by PyYAML's CSafeLoader and by ``load_all``; they must agree
(values and types). Texts the guard lets through to yaml_rs are counted, so that the fast path is
known to be exercised, and texts it must keep from yaml_rs are listed."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from ingressd import yamlread
from ingressd.sources.manifests import parse_file

pytestmark = pytest.mark.skipif(yamlread.FAST is None, reason="yaml_rs is not installed")

REPO = Path(__file__).resolve().parents[2]
SCALARS = ["x", "80", "0", "-1", "+1", "1.5", ".5", "1.", "1_000", "1_000.5", "0x1F", "0b11", "0o17", "0755", "08",
           "1e3", "1.0e+3", "1E-2", ".inf", "-.inf", ".nan", ".NaN", "true", "True", "FALSE", "yes", "No", "on", "OFF",
           "y", "n", "null", "Null", "~", "", "1:20", "190:20:30.15", "2024-01-01", "2024-01-01T00:00:00Z", "=",
           "'yes'", '"0755"', "'1e3'", '"true"', "'2024-01-01'", "a b", "http://x:80/y", "a: b", "-", "--x", "?x",
           "12345678901234567890123", "'it''s'", '"tab\\there"', '"\\u00e9"', "é", "svc-0755", "*.example.com",
           "'*.example.com'", "/p/*", "x # comment", "[1, yes]", "{a: 0755}", "|\n  block\n  text", ">-\n  fold\n  ed"]


def pyyaml(text: str) -> list:
    return [doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc is not None]


def typed(value):
    """Values with their types: 1 == 1.0 == True in Python, not in YAML."""
    if isinstance(value, dict):
        return {typed(k): typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, float) and value != value:
        return ("nan",)
    return (type(value).__name__, value)


def texts():
    for scalar in SCALARS:
        yield f"key: {scalar}\n"
        yield f"list:\n- {scalar}\n- other\n"
        yield f"{scalar}: value\n" if "\n" not in scalar else f"a: {scalar}\n"
        yield f"flow: [{scalar}, z]\n" if "\n" not in scalar else "flow: [z]\n"
    for a, b in itertools.product(["a: 1\n", "- 1\n- 2\n", "", "# comment\n", "~\n"], repeat=2):
        yield a + "---\n" + b
        yield "---\n" + a + "---\n" + b
    yield from ["", "---\n", "---\n---\n", "- a\n- b\n", "---\n- {kind: A}\n- {kind: B}\n", "a: 1\na: 2\n",
                "a: &x {k: v}\nb: *x\n", "a: {k: v}\nb:\n  <<: {m: 1}\n", "%YAML 1.1\n---\na: 1\n", "a: 1\n...\n",
                "\ufeffa: 1\n", "a: '\x85'\n", "a: b\n\tc: d\n", "a: !!str 12\n", "a: !!binary aGk=\n",
                "? complex\n: key\n", "a: [1, 2\n", "a: b: c\n", "- a\nb: c\n", "a:\n  - b\n  c: d\n"]


def outcome(read, text):
    try:
        return "ok", typed(read(text))
    except yaml.YAMLError as error:
        return "error", str(error)


def test_load_all_agrees_with_pyyaml_on_every_text_and_the_fast_path_is_used():
    fast = 0
    for text in texts():
        assert outcome(yamlread.load_all, text) == outcome(pyyaml, text), repr(text)
        if not yamlread._DIFFERENT.search(text) and yamlread._fast(text) is not None:
            fast += 1
            assert typed(yamlread._fast(text)) == typed(pyyaml(text)), repr(text)
    assert fast > 150  # most texts are plain Kubernetes YAML: the fast path is not a dead branch


@pytest.mark.parametrize("text", ["on: push\n", "mode: 0755\n", "v: 1e3\n", "t: 1:20\n", "d: 2024-01-01\n",
                                  "a: !!binary aGk=\n", "b:\n  <<: {m: 1}\n", "a: b\n\tc: d\n", "\ufeffa: 1\n"])
def test_texts_yaml_1_1_reads_differently_are_left_to_pyyaml(text):
    assert yamlread._DIFFERENT.search(text)


def test_every_manifest_of_the_repository_reads_as_with_pyyaml():
    paths = sorted(p for root in ("examples", "tests/corpus", "deploy") for p in (REPO / root).rglob("*.y*ml"))
    assert len(paths) > 10
    fast = 0
    for path in paths:
        text = path.read_text()
        assert outcome(yamlread.load_all, text) == outcome(pyyaml, text), path
        fast += not yamlread._DIFFERENT.search(text)
    assert fast > 0


def test_without_yaml_rs_pyyaml_reads_everything(monkeypatch):
    monkeypatch.setattr(yamlread, "FAST", None)
    assert yamlread.load_all("a: 1\n---\nb: yes\n") == [{"a": 1}, {"b": True}]


@pytest.mark.parametrize("text", ["a: [1, 2\n", "a: b: c\n", "- a\nb: c\n", "a: !foo x\n", "a: b\n\tc: d\n"])
def test_a_broken_file_is_reported_with_its_name_and_pyyaml_s_position(tmp_path, text):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    objects, diagnostics = parse_file(str(path))
    (diagnostic,) = diagnostics
    assert objects == [] and diagnostic.origin == str(path) and str(path) in str(diagnostic)
    assert diagnostic.message.startswith("cannot parse file: ") and "line" in diagnostic.message


def test_an_invalid_object_read_on_the_fast_path_is_reported_with_its_file_and_name(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad, namespace: ns}\n"
                    "spec: {rules: [{host: 'a.com', http: {paths: [{path: 'x', pathType: Prefix}]}}]}\n")
    assert not yamlread._DIFFERENT.search(path.read_text())
    objects, diagnostics = parse_file(str(path))
    (diagnostic,) = diagnostics
    assert objects == [] and diagnostic.origin == str(path) and diagnostic.object == "Ingress ns/bad"
    assert str(path) in str(diagnostic) and "Ingress ns/bad" in str(diagnostic)
