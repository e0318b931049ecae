"""`ingressd check` and `ingressd routes`."""

from __future__ import annotations

import pytest

from support import manifests as m
from support.ingressd import run_cli
from support.manifests import ManifestDir

pytestmark = pytest.mark.timeout(120)


def svc():
    return m.service_with_endpoints("svc-a", 18080) + m.service_with_endpoints("svc-b", 18081)


@pytest.fixture
def mdir(tmp_path):
    d = ManifestDir(tmp_path / "manifests")
    d.write("svc.yaml", svc())
    return d


def output(proc):
    return proc.stdout + proc.stderr


def test_check_clean_directory_exits_0(mdir):
    mdir.write("ing.yaml", [m.ingress("ing-ok", [m.rule("ok.example.com", m.path("/", "svc-a"))])])
    proc = run_cli("check", "--manifests", mdir.path)
    assert proc.returncode == 0, output(proc)
    assert "Traceback" not in output(proc)


def test_check_broken_file_exits_1_naming_file(mdir):
    mdir.write("ing.yaml", [m.ingress("ing-ok", [m.rule("ok.example.com", m.path("/", "svc-a"))])])
    mdir.write_text("broken.yaml", "kind: Ingress\nmetadata: {name: [oops\n")
    proc = run_cli("check", "--manifests", mdir.path)
    assert proc.returncode == 1, output(proc)
    assert "broken.yaml" in output(proc)
    assert "Traceback" not in output(proc)


@pytest.mark.parametrize("bad_path", [
    m.path("relative", "svc-a"),
    m.path("/x", "svc-a", type="Bogus"),
], ids=["relative-path", "bogus-path-type"])
def test_check_invalid_object_exits_1_naming_object(mdir, bad_path):
    mdir.write("bad.yaml", [m.ingress("ing-bad", [m.rule("bad.example.com", bad_path)], namespace="team")])
    proc = run_cli("check", "--manifests", mdir.path)
    assert proc.returncode == 1, output(proc)
    lines = [line for line in output(proc).splitlines() if "team/ing-bad" in line]
    assert lines, output(proc)
    assert "bad.yaml" in lines[0] and "Ingress" in lines[0], lines


def test_check_conflict_is_a_warning_naming_both(mdir):
    mdir.write("a.yaml", [m.ingress("ing-newer", [m.rule("c.example.com", m.path("/same", "svc-a"))],
                                    creation_timestamp="2021-01-01T00:00:00Z")])
    mdir.write("b.yaml", [m.ingress("ing-older", [m.rule("c.example.com", m.path("/same", "svc-b"))],
                                    creation_timestamp="2020-01-01T00:00:00Z")])
    proc = run_cli("check", "--manifests", mdir.path)
    assert proc.returncode == 0, output(proc)
    lines = [line for line in output(proc).splitlines() if "ing-newer" in line and "ing-older" in line]
    assert lines, output(proc)
    assert "warn" in lines[0].lower(), lines


def test_check_bad_annotation_is_a_warning_naming_ingress(mdir):
    mdir.write("ing.yaml", [m.ingress("ing-lots", [m.rule("lots.example.com", m.path("/", "svc-a"))],
                                      annotations={"proxy-body-size": "lots"})])
    proc = run_cli("check", "--manifests", mdir.path)
    assert proc.returncode == 0, output(proc)
    lines = [line for line in output(proc).splitlines() if "default/ing-lots" in line]
    assert lines, output(proc)
    assert "proxy-body-size" in lines[0] and "warn" in lines[0].lower(), lines


def test_routes_lists_compiled_table(mdir):
    mdir.write("ing.yaml", [
        m.ingress("ing-routes", [m.rule("routes.example.com", m.path("/api", "svc-a"),
                                        m.path("/exact", "svc-b", type="Exact"))]),
    ])
    proc = run_cli("routes", "--manifests", mdir.path)
    assert proc.returncode == 0, output(proc)
    lines = proc.stdout.splitlines()
    assert any("routes.example.com" in line and "/api" in line and "Prefix" in line and "svc-a" in line
               for line in lines), proc.stdout
    assert any("routes.example.com" in line and "/exact" in line and "Exact" in line and "svc-b" in line
               for line in lines), proc.stdout


def test_check_ignores_other_kinds_and_other_files(mdir):
    mdir.write("ing.yaml", [
        m.ingress("ing-ok", [m.rule("ok.example.com", m.path("/", "svc-a"))]),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": "x"}},
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": [1, 2]},
    ])
    mdir.write_text("notes.txt", "this is not a manifest: {{{")
    mdir.write_text("README.md", "# docs\n- [ ]\n")
    mdir.write_text(".hidden.yaml", "{{{{ broken but hidden")
    proc = run_cli("check", "--manifests", mdir.path)
    assert proc.returncode == 0, output(proc)
    for name in ("notes.txt", "README.md", ".hidden.yaml", "ConfigMap", "Deployment", "Widget"):
        assert name not in output(proc), output(proc)


def test_routes_reflects_classes_and_conflicts(mdir):
    mdir.write("ing.yaml", [
        m.ingress("ing-old", [m.rule("r.example.com", m.path("/", "svc-a"))], creation_timestamp="2020-01-01T00:00:00Z"),
        m.ingress("ing-new", [m.rule("r.example.com", m.path("/", "svc-b"))], creation_timestamp="2021-01-01T00:00:00Z"),
        m.ingress("ing-other-class", [m.rule("other.example.com", m.path("/", "svc-a"))], class_name="nginx"),
    ])
    proc = run_cli("routes", "--manifests", mdir.path)
    assert proc.returncode == 0, output(proc)
    lines = [line for line in proc.stdout.splitlines() if "r.example.com" in line]
    assert len(lines) == 1 and "svc-a" in lines[0], proc.stdout
    assert "other.example.com" not in proc.stdout
