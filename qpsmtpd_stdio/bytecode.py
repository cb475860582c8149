"""This package's modules and the plugins, run from the standard bytecode cache when it is current.

Each connection imports about forty of the package's modules. Python's import system pays about 0.29 M
instructions a module to find and load one (walking sys.path's finders, building the spec, statting
directory, source and cache), as much as a small module's code costs to unmarshal. ModuleFinder, which
the package's __init__ puts first on sys.meta_path, goes straight to `__pycache__/NAME.cpython-3X.pyc`
beside a plain module of the package, and checks it as importlib does (PEP 3147, PEP 552). Anything else
(no cache, a stale or foreign one, a subpackage, another package) is left to the import system, which
compiles, writes the cache and loads as usual; the next connection then finds it.
"""

import _frozen_importlib as _bootstrap
import _frozen_importlib_external as _external
import _imp
import marshal
import os


def cached_code(source_path: str, source: bytes | None = None, cache: str | None = None):
    """The code in `source_path`'s standard cache (or `cache`) if that is current, else None.

    Current means what importlib means: the source's mtime and size recorded in the cache, or, for a
    hash-based cache (PEP 552), its source hash when the cache asks to be checked. With `source` (the
    source's octets, already read) a hash-based cache is always checked.
    """
    try:
        with open(cache or _external.cache_from_source(source_path), "rb", buffering=0) as fh:
            blob = fh.readall()
        if blob[:4] != _external.MAGIC_NUMBER:
            return None
        flags = int.from_bytes(blob[4:8], "little")
        if flags & 1:  # hash-based
            mode = _imp.check_hash_based_pycs
            if source is not None or (mode != "never" and (flags & 2 or mode == "always")):
                if source is None:
                    with open(source_path, "rb") as fh:
                        source = fh.read()
                if blob[8:16] != _imp.source_hash(_external._RAW_MAGIC_NUMBER, source):
                    return None
        else:
            st = os.stat(source_path)
            if (int.from_bytes(blob[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
                    or int.from_bytes(blob[12:16], "little") != st.st_size & 0xFFFFFFFF):
                return None
        code = marshal.loads(memoryview(blob)[16:])
    except (OSError, ValueError, EOFError, TypeError):
        return None
    _imp._fix_co_filename(code, source_path)  # as importlib does: a cache made elsewhere names this source
    return code


class ModuleFinder:
    """Finds `PACKAGE.NAME` for a plain module in `directory` whose standard cache is current."""

    def __init__(self, package: str, directory: str) -> None:
        import sys

        self.prefix = package + "."
        self.directory = directory
        # the cache's name as importlib makes it, without its general path handling for each module
        plain = sys.pycache_prefix is None and not sys.flags.optimize and sys.implementation.cache_tag
        self._cache = f"{directory}/__pycache__/{{}}.{sys.implementation.cache_tag}.pyc" if plain else None

    def find_spec(self, name: str, path=None, target=None):
        if not name.startswith(self.prefix) or "." in name[len(self.prefix):]:
            return None
        base = name[len(self.prefix):]
        source = f"{self.directory}/{base}.py"
        cache = self._cache.format(base) if self._cache else _external.cache_from_source(source)
        code = cached_code(source, cache=cache)
        if code is None:
            return None
        spec = _bootstrap.ModuleSpec(name, _CachedLoader(name, source, code), origin=source)
        spec.has_location = True
        spec.cached = cache
        return spec


class _CachedLoader(_external.SourceFileLoader):
    """importlib's loader for a source file (get_source, get_data...), with the code already read."""

    def __init__(self, name: str, path: str, code) -> None:
        super().__init__(name, path)
        self._code = code

    def get_code(self, fullname: str):
        code, self._code = self._code, None
        return code if code is not None else super().get_code(fullname)  # a reload: the ordinary way


def install(package: str, directory: str) -> None:
    """Put a ModuleFinder for `package` first on sys.meta_path (once)."""
    import sys

    if not any(isinstance(f, ModuleFinder) and f.prefix == package + "." for f in sys.meta_path):
        sys.meta_path.insert(0, ModuleFinder(package, directory))
