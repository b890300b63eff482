"""The kernels' on-disk cache is keyed on every kernel module (replay/kernel_cache.py): an edit to
a helper module recompiles the kernels that inline it, instead of leaving stale machine code."""

from __future__ import annotations

import os
import re

import replay.kernel_cache as kc


def test_every_module_that_compiles_kernels_is_listed():
    found = set()
    for root, _, files in os.walk(kc.PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                text = open(path, encoding="utf-8").read()
                if re.search(r"@(njit|jit|cuda\.jit)\b|\bnjit\(|cuda\.jit\(", text) and f != "kernel_cache.py":
                    found.add(os.path.relpath(path, kc.PACKAGE).replace(os.sep, "/"))
    assert found, "no kernel module found: the scan is broken"
    assert found <= set(kc.KERNEL_MODULES), f"not in KERNEL_MODULES: {sorted(found - set(kc.KERNEL_MODULES))}"


def test_kernels_use_the_package_stamp_locator():
    from replay import kernels
    from replay.graph import kernels as graph_kernels

    for f in (kernels.draw_packed, graph_kernels.graph_replay):
        locator = f._cache._impl.locator
        assert type(locator).__name__.startswith("PackageStamp"), type(locator)
        own, pkg = locator.get_source_stamp()
        assert pkg == kc.package_stamp()


def test_the_stamp_changes_when_any_kernel_module_changes(tmp_path, monkeypatch):
    for rel in kc.KERNEL_MODULES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    monkeypatch.setattr(kc, "PACKAGE", tmp_path)
    monkeypatch.setattr(kc, "_stamp", None)
    before = kc.package_stamp()
    os.utime(tmp_path / "kernels.py", ns=(1, 10**18))  # the helper module changes; the others do not
    monkeypatch.setattr(kc, "_stamp", None)
    after = kc.package_stamp()
    assert before != after
    assert [x for x in before if x[0] != "kernels.py"] == [x for x in after if x[0] != "kernels.py"]
