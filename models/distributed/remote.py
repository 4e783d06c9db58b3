"""The pack's link to Ray: the clear error when it is missing, the local runtime, and how Ray's worker
processes find the pack's code.

The pack is imported under whatever name its host gives it (ComfyUI: the folder's name, tests:
``mimo_pack``, the batch runner: ``models`` as the top package) and uses relative imports only, so a
Ray worker process cannot import it by name. The actor class and task function Ray ships are
therefore tiny generic ones, defined in a module Ray cannot import (so they are pickled by value):
they first register the pack's top package in the worker from its folder, exactly as the driver has
it, then import the real code by module name. Everything sent afterwards (tensors, dataclasses of
the pack) is then unpickled by reference as usual."""

import os
import sys
from pathlib import Path

from ..errors import MIMOInputError

INSTALL_HINT = "install it with `pip install ray` (or the pack's [ray] extra: `pip install .[ray]` from the pack's folder)"


class RayMissingError(MIMOInputError):
    """Ray is needed (several devices, the batch runner) but not installed."""


class ClusterUnreachableError(MIMOInputError):
    """The Ray cluster given by address could not be joined."""


def require_ray(what: str = "Sampling on several devices"):
    """The ``ray`` module, or a ``RayMissingError`` saying how to install it."""
    try:
        import ray
    except ImportError as e:  # ModuleNotFoundError, or sys.modules['ray'] = None
        raise RayMissingError(f"{what} runs on Ray, which is not installed: {INSTALL_HINT}.") from e
    return ray


def ensure_local_runtime(num_cpus: int | None = None, address: str | None = None):
    """Ray, initialised once per process: ``address`` None starts a private local runtime (loopback
    only, no dashboard) unless one is already running in this process; an address ('auto',
    'ray://host:10001', ...) joins that cluster. Returns the ``ray`` module."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address is None:
        cpus = num_cpus if num_cpus is not None else max(1, os.cpu_count() or 1)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=True,
                 configure_logging=False)
    else:  # another machine's workers may not have the pack: its models/ folder travels with the job
        try:
            ray.init(address=address, log_to_driver=True, configure_logging=False,
                     runtime_env=cluster_runtime_env())
        except (ConnectionError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ClusterUnreachableError(
                f"Could not join the Ray cluster at {address!r} ({first}). Check the address (`ray status` on "
                "the head shows it), that the head is running, and, where the cluster uses token "
                "authentication, that this machine has the same RAY_AUTH_MODE and token (RAY_AUTH_TOKEN or "
                "~/.ray/auth_token). Leave the address out to run on a local runtime.") from None
    return ray


def cluster_runtime_env() -> dict:
    """Ray's runtime_env shipping ``models/`` (pure Python, under 1 MB) to every worker, where it is
    importable as the top package ``models`` (what ``portable`` tasks and actors import)."""
    return {"py_modules": [str(Path(__file__).resolve().parents[1])], "excludes": ["__pycache__"]}


def pack_location() -> tuple[str, str, str]:
    """(top package name, its folder, the name of the ``models`` package inside it), as this process has them."""
    models = __name__.rsplit(".distributed.", 1)[0]  # '<pack>.models', or 'models' (python -m models....)
    here = Path(__file__).resolve()
    if models == "models":
        return "models", str(here.parents[1]), models
    # The pack's own name, whatever its host calls it (it may hold dots: 'custom_nodes.ComfyUI-MIMO').
    return models.rsplit(".models", 1)[0], str(here.parents[2]), models


_BOOT_SOURCE = '''
def _register(top, folder):
    import importlib.util, os, sys
    if top in sys.modules or not os.path.isdir(folder):
        return  # a worker on another machine: the runtime_env made ``models`` importable
    spec = importlib.util.spec_from_file_location(top, folder + "/__init__.py", submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    spec.loader.exec_module(module)


class Host:
    """A Ray actor holding one object of the pack: ``Host(top, folder, module, cls, *args)``."""

    def __init__(self, top, folder, module, cls, *args):
        import importlib
        _register(top, folder)
        self.obj = getattr(importlib.import_module(module), cls)(*args)

    def call(self, method, *args, **kwargs):
        return getattr(self.obj, method)(*args, **kwargs)


def host_task(top, folder, module, function, *args, **kwargs):
    """A Ray task running one function of the pack."""
    import importlib
    _register(top, folder)
    return getattr(importlib.import_module(module), function)(*args, **kwargs)
'''
_boot: dict = {"__name__": "mimo_remote_boot"}  # not in sys.modules: Ray pickles these by value
exec(compile(_BOOT_SOURCE, "<mimo remote boot>", "exec"), _boot)
assert "mimo_remote_boot" not in sys.modules


def _location(portable: bool) -> tuple[str, str, str]:
    if portable:  # plain values in and out only: the workers may import the code as 'models'
        return "models", str(Path(__file__).resolve().parents[1]), "models"
    return pack_location()


def actor(module: str, cls: str, *args, portable: bool = False, **options):
    """A Ray actor holding ``<models>.<module>.<cls>(*args)`` (args: plain Python values); call its
    methods with ``handle.call.remote('method', ...)``. ``options``: Ray actor options. ``portable``:
    the code is imported as the top package ``models`` in the workers, so it runs on machines that got
    ``models/`` through ``cluster_runtime_env`` too; only plain values (no objects of the pack) may
    then go in and out."""
    ray = require_ray()
    top, folder, models = _location(portable)
    return ray.remote(_boot["Host"]).options(**options).remote(top, folder, f"{models}.{module}", cls, *args)


def task(module: str, function: str, portable: bool = False, **options):
    """A Ray remote function running ``<models>.<module>.<function>``; call ``.remote(*args)``
    (``portable``: as for ``actor``)."""
    ray = require_ray()
    top, folder, models = _location(portable)
    remote = ray.remote(_boot["host_task"]).options(**options)

    class _Bound:
        def remote(self, *args, **kwargs):
            return remote.remote(top, folder, f"{models}.{module}", function, *args, **kwargs)

    return _Bound()
