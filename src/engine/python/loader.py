"""authhost's Python engine, the parts best said in Python: the plugins directory on
sys.path, fresh plugin modules, and checking that a callback can take its arguments.

Loaded once per process as the module `_authhost_loader`; the engine calls these functions
with the GIL held, one load at a time.
"""
import importlib
import inspect
import os
import sys
import types

# Every plugins directory a load has used, absolute; each ends with a separator.
_plugin_dirs = []


def begin_load(plugins_dir):
    """Makes `plugins_dir` the plugins directory on sys.path, and forgets every module that
    was loaded from a plugins directory, so that imports of helper modules read them afresh
    (a helper that changed takes effect at the reload) and a helper of another host's
    plugins directory is never taken for one of this one.

    The directory goes at the end of sys.path: a helper module can never hide a module of
    the standard library or an installed package.
    """
    directory = os.path.abspath(plugins_dir)
    for known in _plugin_dirs:
        entry = known[:-1]
        while entry in sys.path:
            sys.path.remove(entry)
    prefix = os.path.join(directory, "")
    if prefix not in _plugin_dirs:
        _plugin_dirs.append(prefix)
    sys.path.append(directory)
    prefixes = tuple(_plugin_dirs)
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.abspath(path).startswith(prefixes):
            del sys.modules[name]
    importlib.invalidate_caches()


def new_module(name, path):
    """A fresh module for the plugin file `path`, registered in sys.modules under `name`
    (dataclasses, pickle and typing look modules up there)."""
    module = types.ModuleType(name)
    module.__file__ = os.path.abspath(path)
    sys.modules[name] = module
    return module


def check_callback(function, arity):
    """Why `function` cannot answer a callback with `arity` string arguments, or None."""
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        return "is an async function; callbacks are called synchronously"
    if inspect.isgeneratorfunction(function):
        return "is a generator function; it must return its decision"
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None  # some builtins have no signature; calling will tell
    try:
        signature.bind(*([""] * arity))
    except TypeError as e:
        return f"cannot be called with {arity} argument(s): {e}"
    return None
