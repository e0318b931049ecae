"""The manifest directory source (issue 2, "Objects read from the directory"): tmp_path only, no
watch loop, no sleeping."""

from __future__ import annotations

import json
import os

import yaml

from ingressd.objects import Ingress, Service
from ingressd.sources.manifests import ManifestDirectory, parse_file
from unitkit import ingress, path, rule, service


def dump(*docs) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def web(name="web", host="foo.com", svc="svc", **kw):
    return ingress(name, rule(host, path("/", svc)), **kw)


def refs(snapshot) -> list[str]:
    return sorted(o.meta.ref for o in snapshot.objects)


def ingress_backend(snapshot, name="web") -> str:
    (ing,) = [o for o in snapshot.objects if isinstance(o, Ingress) and o.meta.name == name]
    return ing.rules[0].paths[0].backend.service


def write(p, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def errors(snapshot) -> list:
    return [d for d in snapshot.diagnostics if d.severity == "error"]


def test_recursive_scan_of_yaml_yml_and_json(tmp_path):
    write(tmp_path / "a.yaml", dump(web("a", "a.com")))
    write(tmp_path / "sub" / "deeper" / "b.yml", dump(web("b", "b.com")))
    write(tmp_path / "sub" / "c.json", json.dumps(web("c", "c.com")))
    source = ManifestDirectory(tmp_path)
    assert source.scan() is True
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/a", "Ingress default/b", "Ingress default/c"]
    assert snap.diagnostics == ()
    origins = {o.meta.name: o.meta.origin for o in snap.objects}
    assert origins["b"].endswith(os.path.join("sub", "deeper", "b.yml"))


def test_dot_files_dot_directories_and_other_extensions_are_ignored(tmp_path):
    write(tmp_path / "ok.yaml", dump(web("ok")))
    write(tmp_path / ".hidden.yaml", dump(web("hidden-file", "h1.com")))
    write(tmp_path / ".git" / "x.yaml", dump(web("hidden-dir", "h2.com")))
    write(tmp_path / "sub" / ".cache" / "y.yaml", dump(web("hidden-subdir", "h3.com")))
    write(tmp_path / "notes.txt", dump(web("txt", "h4.com")))
    write(tmp_path / "web.yaml.bak", dump(web("bak", "h5.com")))
    write(tmp_path / "README.md", "# not a manifest: {")
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/ok"]
    assert snap.diagnostics == ()


def test_multi_document_file_with_empty_documents_and_lists(tmp_path):
    text = dump(web("a", "a.com"), service("svc")) + "---\n---\n# only a comment\n---\n" + dump(
        {"apiVersion": "v1", "kind": "List", "items": [web("b", "b.com"), service("svc2")]})
    write(tmp_path / "all.yaml", text)
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/a", "Ingress default/b", "Service default/svc", "Service default/svc2"]
    assert snap.diagnostics == ()


def test_other_kinds_in_a_file_are_ignored_without_error(tmp_path):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 2}}
    write(tmp_path / "app.yaml", dump(deployment, web()))
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/web"] and snap.diagnostics == ()


def test_scan_reports_whether_something_changed(tmp_path):
    write(tmp_path / "a.yaml", dump(web()))
    source = ManifestDirectory(tmp_path)
    assert source.scan() is True
    assert source.scan() is False
    write(tmp_path / "b.yaml", dump(web("b", "b.com")))
    assert source.scan() is True
    assert source.scan() is False


def test_changed_file_is_reread(tmp_path):
    f = tmp_path / "a.yaml"
    write(f, dump(web(svc="one")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    write(f, dump(web(svc="second-version")))
    assert source.scan() is True
    assert ingress_backend(source.snapshot()) == "second-version"


def test_same_size_rewrite_within_one_timestamp_tick_is_reread(tmp_path):
    # Filesystems with coarse timestamps (1 s on many network filesystems, a few ms on others)
    # give two quick in-place writes the same mtime; same length, same inode. The edit must still
    # be applied, not lost until the next unrelated change.
    f = tmp_path / "a.yaml"
    write(f, dump(web(svc="aaa")))
    before = os.stat(f)
    source = ManifestDirectory(tmp_path)
    source.scan()
    write(f, dump(web(svc="bbb")))
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(f).st_size == before.st_size and os.stat(f).st_ino == before.st_ino
    source.scan()
    assert ingress_backend(source.snapshot()) == "bbb"


def test_deleted_file_removes_its_objects(tmp_path):
    write(tmp_path / "a.yaml", dump(web("a", "a.com")))
    write(tmp_path / "b.yaml", dump(web("b", "b.com")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    (tmp_path / "a.yaml").unlink()
    assert source.scan() is True
    assert refs(source.snapshot()) == ["Ingress default/b"]


def test_deleted_broken_file_removes_its_kept_objects_and_errors(tmp_path):
    f = tmp_path / "a.yaml"
    write(f, dump(web()))
    source = ManifestDirectory(tmp_path)
    source.scan()
    write(f, "this: [is not: yaml")
    source.scan()
    assert refs(source.snapshot()) == ["Ingress default/web"]
    f.unlink()
    source.scan()
    snap = source.snapshot()
    assert snap.objects == () and snap.diagnostics == ()


def test_broken_file_keeps_its_last_good_version(tmp_path):
    f = tmp_path / "a.yaml"
    write(f, dump(web(svc="good"), service("svc")))
    write(tmp_path / "other.yaml", dump(web("other", "other.com")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    write(f, "kind: Ingress\nmetadata: {name: [unclosed\n")
    assert source.scan() is True
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/other", "Ingress default/web", "Service default/svc"]
    assert ingress_backend(snap) == "good"
    (err,) = errors(snap)
    assert err.origin == str(f) and "parse" in err.message
    # fixed: the new version replaces the kept one and the error goes away
    write(f, dump(web(svc="fixed")))
    source.scan()
    snap = source.snapshot()
    assert ingress_backend(snap) == "fixed" and errors(snap) == []
    assert refs(snap) == ["Ingress default/other", "Ingress default/web"]


def test_broken_file_on_first_read_defines_nothing_and_is_reported(tmp_path):
    write(tmp_path / "bad.yaml", "a: b: c: [\n")
    write(tmp_path / "good.yaml", dump(web()))
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/web"]
    (err,) = errors(snap)
    assert err.origin == str(tmp_path / "bad.yaml")


def test_invalid_utf8_and_broken_json_are_reported_not_raised(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    write(tmp_path / "bad.json", '{"apiVersion": ')
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert snap.objects == ()
    assert sorted(os.path.basename(d.origin) for d in errors(snap)) == ["bad.json", "bin.yaml"]


def test_invalid_object_keeps_its_previous_version_and_others_update(tmp_path):
    f = tmp_path / "a.yaml"
    write(f, dump(web(svc="v1"), web("second", "second.com", svc="s1")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    broken = web(svc="v2")
    broken["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "Regex"
    write(f, dump(broken, web("second", "second.com", svc="s2")))
    source.scan()
    snap = source.snapshot()
    assert ingress_backend(snap, "web") == "v1"       # last good version
    assert ingress_backend(snap, "second") == "s2"    # the valid object updates
    (err,) = errors(snap)
    assert err.origin == str(f) and err.object == "Ingress default/web" and "pathType" in err.message
    assert "Ingress default/web" in str(err) and str(f) in str(err)


def test_invalid_object_without_previous_version_is_reported_and_skipped(tmp_path):
    broken = web("broken", "b.com")
    broken["spec"]["rules"][0]["host"] = "not a host"
    write(tmp_path / "a.yaml", dump(broken, web("fine", "f.com")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/fine"]
    (err,) = errors(snap)
    assert err.object == "Ingress default/broken" and "spec.rules[0].host" in err.message


def test_object_removed_from_a_file_disappears(tmp_path):
    f = tmp_path / "a.yaml"
    write(f, dump(web("a", "a.com"), web("b", "b.com")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    write(f, dump(web("a", "a.com")))
    source.scan()
    assert refs(source.snapshot()) == ["Ingress default/a"]


def test_duplicate_object_across_files_is_warned_and_one_copy_kept(tmp_path):
    write(tmp_path / "a.yaml", dump(web(svc="from-a")))
    write(tmp_path / "b.yaml", dump(web(svc="from-b")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/web"]
    warnings = [d for d in snap.diagnostics if d.severity == "warning"]
    assert len(warnings) == 1
    text = str(warnings[0])
    assert "Ingress default/web" in text and "a.yaml" in text and "b.yaml" in text


def test_same_name_in_different_namespaces_or_kinds_is_not_a_duplicate(tmp_path):
    write(tmp_path / "a.yaml", dump(web(), service("web")))
    write(tmp_path / "b.yaml", dump(web(namespace="other"), service("web", namespace="other")))
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert len(snap.objects) == 4 and snap.diagnostics == ()


def test_configmap_volume_layout_and_atomic_swap(tmp_path):
    # Kubernetes mounts a ConfigMap as ..<timestamp>/files, ..data -> ..<timestamp>, file -> ..data/file.
    v1 = tmp_path / "..2024_01_01_00_00_00.000000001"
    write(v1 / "web.yaml", dump(web(svc="v1")))
    os.symlink(v1.name, tmp_path / "..data")
    os.symlink("..data/web.yaml", tmp_path / "web.yaml")
    source = ManifestDirectory(tmp_path)
    source.scan()
    snap = source.snapshot()
    assert refs(snap) == ["Ingress default/web"] and snap.diagnostics == ()  # seen once, not three times
    v2 = tmp_path / "..2024_01_01_00_00_01.000000002"
    write(v2 / "web.yaml", dump(web(svc="v2")))
    os.symlink(v2.name, tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert source.scan() is True
    assert ingress_backend(source.snapshot()) == "v2"


def test_missing_directory_is_not_fatal(tmp_path):
    source = ManifestDirectory(tmp_path / "nope")
    source.scan()
    assert source.snapshot().objects == ()


def test_parse_file_directly(tmp_path):
    f = tmp_path / "a.yaml"
    write(f, dump(web(), service("svc")))
    objs, diags = parse_file(str(f))
    assert diags == [] and {type(o) for o in objs} == {Ingress, Service}
    write(f, "{")
    kept, diags = parse_file(str(f), objs)
    assert kept == objs and len(diags) == 1 and diags[0].severity == "error" and diags[0].origin == str(f)
    assert "previous" in diags[0].message
