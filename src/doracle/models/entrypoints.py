"""doracle's own architectures, built without timm and registered in timm's registry when timm is
imported.

``import timm`` costs about twice ``import torch`` (it pulls in torchvision and ``torch._dynamo``),
and every pipeline job that builds a network paid it. So the model modules
(:mod:`doracle.models.small`, :mod:`~doracle.models.resnets`, :mod:`~doracle.models.gan`) mark
their timm-style entry points with :func:`entrypoint` (same signature as timm's: ``pretrained``,
``num_classes``, ``in_chans``, ... ``**kwargs``), :func:`doracle.models.create` calls them
directly, and :func:`register_with_timm` puts the same functions into timm's registry:

* at once, when timm is already imported when :mod:`doracle.models` is;
* otherwise right after timm's own import finishes (:func:`install_timm_hook`: a
  ``sys.meta_path`` finder that wraps timm's loader), so ``import doracle.models; import timm;
  timm.create_model("doracle_preact_resnet18")`` works as it did, without any job paying for timm.

Torch-free until :func:`all_entrypoints` imports the model modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

#: name -> entry point, filled as the model modules are imported
_ENTRYPOINTS: dict[str, Callable] = {}
#: the model modules that define entry points
MODULES = ("doracle.models.small", "doracle.models.resnets", "doracle.models.gan")


def entrypoint(fn: Callable) -> Callable:
    """Mark ``fn`` as the builder of the architecture named ``fn.__name__`` (timm's convention)."""
    _ENTRYPOINTS[fn.__name__] = fn
    return fn


def all_entrypoints() -> dict[str, Callable]:
    """Every entry point (imports the model modules, hence torch)."""

    for m in MODULES:
        importlib.import_module(m)
    return dict(_ENTRYPOINTS)


def register_with_timm() -> None:
    """Register every entry point in timm's model registry (once: names already there are skipped)."""
    # timm (about twice import torch): only for a timm architecture
    from timm.models import is_model, register_model

    for name, fn in all_entrypoints().items():
        if not is_model(name):
            register_model(fn)


class _TimmHook(importlib.abc.MetaPathFinder):
    """Finds timm's real spec and wraps its loader: after timm's module runs, register ours."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        uninstall_timm_hook()  # one shot, and the real finders answer below
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module, run=run):
            run(module)
            register_with_timm()

        spec.loader.exec_module = exec_module
        return spec


_HOOK = _TimmHook()


def install_timm_hook() -> None:
    """Register doracle's models in timm's registry now if timm is loaded, else when it is imported."""
    if "timm" in sys.modules:
        register_with_timm()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall_timm_hook() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
