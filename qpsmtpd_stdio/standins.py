"""Importing a library without paying for modules it names but does not need.

Libraries on the per-connection path pay for imports they do not need:
- `_sqlite3` takes `functools.lru_cache` for its statement cache, and `re`
  (imported by dkimpy) takes lru_cache and, through enum, `reduce`; functools
  brings collections: 9-10 M instructions (about 3 ms) for two names whose C
  code is in `_functools` (lent_functools());
- dkimpy imports logging for a default logger this server never asks for (it
  passes its own), and logging brings traceback, threading, string, weakref...:
  about 33 M instructions (10 ms);
- dkimpy takes hashlib's sha1 and sha256, and hashlib loads OpenSSL's
  libcrypto: 10 M instructions, more than a small message's hashing costs
  with CPython's built-in SHA code (dkimcheck.load() chooses by size).

import_with() puts stand-ins into sys.modules for the import only. The library
keeps what it took from them; a stand-in fetches anything else from the real
module, imported the first time it is asked; and a later `import functools`
or `import logging` anywhere gets the real module. If the import fails with
the stand-ins (another version of the library wanting more of them at import),
what it left is removed and the import is made again the ordinary way.
"""

import sys

ModuleType = type(sys)


def stand_in(name: str, **attributes) -> ModuleType:
    """A module called `name` with these attributes; any other is the real module's, imported on first use."""
    module = ModuleType(name)
    module.__dict__.update(attributes)

    def __getattr__(attribute: str):
        if attribute.startswith("__") or sys.modules.get(name) is module:
            raise AttributeError(attribute)  # while it stands in, the import system probes it (__path__...)
        __import__(name)
        return getattr(sys.modules[name], attribute)

    module.__getattr__ = __getattr__
    return module


def lent_functools() -> ModuleType:
    """A functools stand-in lending what `_sqlite3`, `re` and `enum` take at import: lru_cache and reduce."""
    from _functools import _lru_cache_wrapper, reduce

    def lru_cache(maxsize=128, typed=False):
        # functools' own lru_cache with a plain tuple for cache_info() (functools makes a namedtuple of it)
        return lambda function: _lru_cache_wrapper(function, maxsize, typed, tuple)

    return stand_in("functools", lru_cache=lru_cache, reduce=reduce)


def import_with(name: str, *stand_ins: ModuleType) -> ModuleType:
    """Import module `name` (or return it, already imported) with the stand-ins for modules not yet imported."""
    lent = [m for m in stand_ins if m.__name__ not in sys.modules]
    if name not in sys.modules and lent:
        before = set(sys.modules)
        sys.modules.update((m.__name__, m) for m in lent)
        try:
            __import__(name)
        except (ImportError, AttributeError, TypeError):
            for partial in set(sys.modules) - before:
                del sys.modules[partial]  # the stand-ins, and any submodule that took from them
        finally:
            for m in lent:
                if sys.modules.get(m.__name__) is m:
                    del sys.modules[m.__name__]
    __import__(name)
    return sys.modules[name]
