"""The manifest directory is watched with inotify: an edit is seen at once, without waiting for a poll.

Real files in a temporary directory, a real inotify watch (watchfiles); the poll interval is set to an
hour, so only the watch can deliver the change within the test's timeout.
"""

from __future__ import annotations

import asyncio
import os
import time

import yaml

from ingressd.sources.manifests import ManifestDirectory

from unitkit import ingress, path, rule


def _write(target, docs) -> None:
    tmp = target.with_name("." + target.name + ".tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, target)  # as editors, kubectl cp and ConfigMap volumes do: a new inode


def test_a_replaced_file_is_read_without_a_poll(tmp_path):
    target = tmp_path / "web.yaml"
    _write(target, [ingress("web", rule("a.test", path("/", "web")))])

    async def run():
        source = ManifestDirectory(tmp_path, interval=3600)
        await source.start()
        try:
            await source.synced()
            first = source.snapshot()
            await asyncio.sleep(0.05)  # let the watch start
            started = time.monotonic()
            _write(target, [ingress("web", rule("b.test", path("/", "web")))])
            await asyncio.wait_for(source.changed(), 5)
            hosts = [r.host for obj in source.snapshot().objects for r in getattr(obj, "rules", ())]
            return first, hosts, time.monotonic() - started
        finally:
            await source.close()

    first, hosts, _elapsed = asyncio.run(run())
    assert hosts == ["b.test"]
    assert [r.host for obj in first.objects for r in getattr(obj, "rules", ())] == ["a.test"]


def test_a_new_file_in_a_subdirectory_is_seen(tmp_path):
    (tmp_path / "team").mkdir()

    async def run():
        source = ManifestDirectory(tmp_path, interval=3600)
        await source.start()
        try:
            await source.synced()
            await asyncio.sleep(0.05)
            _write(tmp_path / "team" / "api.yaml", [ingress("api", rule("api.test", path("/", "api")))])
            await asyncio.wait_for(source.changed(), 5)
            return [obj.meta.name for obj in source.snapshot().objects]
        finally:
            await source.close()

    assert "api" in asyncio.run(run())


def test_a_file_with_nothing_valid_in_it_still_reports_its_errors(tmp_path):
    """A broken file added while serving changes no object, only the diagnostics: a new snapshot
    must carry them (it once returned the previous snapshot, and the error was never reported)."""
    _write(tmp_path / "web.yaml", [ingress("web", rule("a.test", path("/", "web")))])

    async def run():
        source = ManifestDirectory(tmp_path, interval=3600)
        await source.start()
        try:
            await source.synced()
            first = source.snapshot()
            await asyncio.sleep(0.05)
            (tmp_path / "broken.yaml").write_text("kind: Ingress\nmetadata: [not, a, map]\n")
            await asyncio.wait_for(source.changed(), 5)
            return first, source.snapshot()
        finally:
            await source.close()

    first, second = asyncio.run(run())
    assert second is not first and second.objects == first.objects
    assert any("broken.yaml" in (d.origin or "") for d in second.diagnostics), second.diagnostics
