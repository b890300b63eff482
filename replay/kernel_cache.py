"""Numba's on-disk kernel cache, invalidated by a change to any kernel module.

Numba caches a compiled function (`cache=True`) under the stamp (modification time and size) of
the file that defines it, and nothing else. Our kernels inline helpers from other modules (the
graph kernel inlines replay/kernels.py's draws and votes; the CUDA kernels compile the CPU
helpers again), so an edit to replay/kernels.py alone would leave the graph kernel's cached
machine code, with the old helper inside, in use: stale numbers, silently. Here the stamp of
every kernel defined in this package also covers every module in KERNEL_MODULES, so any edit to
any of them recompiles every kernel once. `install()` puts these locators in front of Numba's
(CPU, and numba-cuda's when it is loaded) before a module's decorators run; each kernel module
calls it first. tests/test_kernel_cache.py checks that every module of the package that compiles
kernels is listed.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # replay/
# every module of the package that defines or inlines compiled kernels, relative to replay/
KERNEL_MODULES = ("kernels.py", "scan_stats.py", "graph/kernels.py", "controllers/kernels.py", "gpu/kernels.py",
                  "gpu/graph_kernels.py")

_stamp: tuple | None = None
_installed: set[str] = set()


def package_stamp() -> tuple:
    """(path, mtime in ns, size) of every kernel module, read once per process."""
    global _stamp
    if _stamp is None:
        out = []
        for rel in KERNEL_MODULES:
            try:
                st = os.stat(PACKAGE / rel)
                out.append((rel, st.st_mtime_ns, st.st_size))
            except OSError:  # a module not shipped (none today): its absence is part of the stamp
                out.append((rel, -1, -1))
        _stamp = tuple(out)
    return _stamp


def _inside(py_file: str) -> bool:
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE)
    except OSError:
        return False


def _wrap(base):
    """A locator class like `base` whose stamp also covers the kernel modules, for this package's
    functions only (others get Numba's own locators)."""

    class PackageStampLocator(base):
        def get_source_stamp(self):
            return (super().get_source_stamp(), package_stamp())

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _inside(py_file):
                return None
            return super().from_function(py_func, py_file)

    PackageStampLocator.__name__ = PackageStampLocator.__qualname__ = f"PackageStamp{base.__name__.lstrip('_')}"
    return PackageStampLocator


def _install_into(impl, names: tuple[str, ...], module) -> None:
    bases = [getattr(module, n) for n in names if hasattr(module, n)]
    ours = [_wrap(b) for b in bases]
    # in Numba's order (a user's NUMBA_CACHE_DIR first, then beside the source, then the user's
    # cache folder), in front of Numba's own
    impl._locator_classes = ours + [c for c in impl._locator_classes if not c.__name__.startswith("PackageStamp")]


def install(target: str = "cpu") -> None:
    """Put the package-stamp locators in front of Numba's, for 'cpu' (numba) or 'cuda'
    (numba-cuda's own caching module). Idempotent; call before any `cache=True` decorator."""
    if target in _installed:
        return
    if target == "cpu":
        from numba.core import caching

        impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
        _install_into(impl, ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator"), caching)
    else:
        try:
            from numba.cuda.core import caching
        except ImportError:  # a numba-cuda without its own caching module: numba's is the one used
            install("cpu")
            return
        _install_into(caching.CacheImpl, ("_UserProvidedCacheLocator", "_InTreeCacheLocator",
                                          "_UserWideCacheLocator"), caching)
    _installed.add(target)
