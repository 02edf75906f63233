"""Loading ``torch.save`` files without ever running code from them.

Released POSTER++ checkpoints are full pickles: besides tensors they hold objects of a class that
existed only in the training script (``__main__.RecorderMeter1``). ``torch.load(weights_only=True)``
rejects them, and ``weights_only=False`` would execute whatever a file asks for. This unpickler
resolves only an allow-list of tensor, array and container constructors; classes from modules that
cannot be imported here (``__main__``, uninstalled packages) become inert ``OpaqueObject``s holding
their plain data; every other global (``os.system``, ``builtins.eval``, ...) stops the load.
"""
from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import importlib.util
import io
import pickle
import types
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import CheckpointError


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for a global that could run code."""


class OpaqueObject:
    """Stand-in for an object whose class is not available here; keeps its data, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<opaque {type(self).__module__}.{type(self).__qualname__}>"


def _placeholder_class(module: str, name: str) -> type:
    return type(name, (OpaqueObject,), {"__module__": module, "__qualname__": name})


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if backward_hooks:
        raise UnsafePickleError("tensor with backward hooks (callables) refused")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                                           collections.OrderedDict(), metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if backward_hooks:
        raise UnsafePickleError("parameter with backward hooks (callables) refused")
    return torch._utils._rebuild_parameter(data, requires_grad, collections.OrderedDict())


def _reconstructor(cls, base, state):
    # copyreg._reconstructor calls base.__init__(obj, state): only allowed for inert placeholders.
    if isinstance(cls, type) and issubclass(cls, OpaqueObject) and base is object:
        obj = cls.__new__(cls)
        obj.state = state
        return obj
    raise UnsafePickleError(f"copyreg._reconstructor for {getattr(cls, '__name__', cls)!r} refused")


def _encode(obj: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles of numpy arrays store raw bytes through _codecs.encode(str, "latin1").
    return _codecs.encode(obj, encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
}
# Plain-data classes that are importable but need not be: kept as inert placeholders.
_INERT = {("argparse", "Namespace")}


def _resolve(module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
        return _ALLOWED[(module, name)]
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    if module in ("numpy.dtypes", "numpy") and name.endswith("DType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if isinstance(dtype_class, type) and issubclass(dtype_class, np.dtype):
            return dtype_class
    top = module.split(".")[0]
    if (module, name) in _INERT or top == "__main__" or importlib.util.find_spec(top) is None:
        return _placeholder_class(module, name)
    raise UnsafePickleError(f"{module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol <= 2 writes builtins as "__builtin__"): judge the real target.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        return _resolve(module, name)


def _load(file: BinaryIO, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


def _loads(data: bytes, **kwargs: Any) -> Any:
    return _load(io.BytesIO(data), **kwargs)


# torch.load accepts a "pickle module": anything with Unpickler/load/loads.
restricted_pickle = types.ModuleType("poster_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _load
restricted_pickle.loads = _loads
restricted_pickle.__dict__["UnpicklingError"] = pickle.UnpicklingError


def safe_torch_load(path: str, label: str | None = None) -> Any:
    """``torch.load`` a file onto the CPU through the restricted unpickler.

    Raises ``CheckpointError`` with a one-line message for unsafe, corrupt, truncated, empty and
    non-PyTorch files.
    """
    label = label or str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise CheckpointError(f"cannot read {label}: {exc.strerror or exc}") from None
    if not head:
        raise CheckpointError(f"{label} is empty (0 bytes)")
    if head.lstrip().startswith((b"<", b"<!")):
        raise CheckpointError(f"{label} is an HTML or XML page, not a PyTorch checkpoint")
    try:
        return torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except UnsafePickleError as exc:
        raise CheckpointError(
            f"refused to load {label}: it asks to call {exc}, which could run code; "
            "only tensors, arrays and plain data are accepted") from None
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt zip, truncated data, not a pickle at all ...
        kind = type(exc).__name__
        detail = str(exc).splitlines()[0] if str(exc) else kind
        if "zip archive" in detail or "central directory" in detail or isinstance(exc, (EOFError,)):
            raise CheckpointError(f"{label} is truncated or corrupt ({detail})") from None
        raise CheckpointError(f"{label} is not a readable PyTorch checkpoint ({kind}: {detail[:160]})") from None
