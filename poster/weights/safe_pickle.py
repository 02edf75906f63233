"""Loading ``torch.save`` files without ever running code from them.

Released POSTER++ checkpoints are full pickles: besides tensors they hold objects of a class that
existed only in the training script (``__main__.RecorderMeter1``). ``torch.load(weights_only=True)``
rejects them, and ``weights_only=False`` would execute whatever a file asks for. This unpickler
resolves only an allow-list of tensor, array and container constructors; classes from modules that
cannot be imported here (``__main__``, uninstalled packages) become inert ``OpaqueObject``s holding
their plain data; every other global (``os.system``, ``builtins.eval``, ...) stops the load.

Nothing a file asks for may claim much more memory than the file itself: every allocation the
pickle requests (``bytearray(n)``, arrays, tensor storages, tensor views, zip members) is counted
against ``ALLOCATION_FACTOR`` times the file's size (plus ``ALLOCATION_SLACK``) before it is made.
"""
from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import contextvars
import importlib.util
import io
import math
import os
import pickle
import tarfile
import types
import zipfile
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from ..errors import CheckpointError


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for a global that could run code."""


class AllocationRefused(pickle.UnpicklingError):
    """The pickle asks for more memory than its file could hold."""


ALLOCATION_FACTOR = 4  # a file may ask for at most this many times its size (views, copies, optimizer state)
ALLOCATION_SLACK = 1 << 20  # and this much besides: small files hold small objects


class _Budget:
    """Bytes a load may still allocate; ``spend`` refuses before anything is allocated."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or nbytes > self.left:
            raise AllocationRefused(f"{what} asks for {_size(nbytes)}, more than a file of this size can hold "
                                    f"(at most {_size(self.limit)} in all)")
        self.left -= nbytes


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MB" if abs(nbytes) >= 2**20 else f"{nbytes:,} bytes"


def budget_for(file_size: int) -> _Budget:
    return _Budget(ALLOCATION_FACTOR * file_size + ALLOCATION_SLACK)


# Set by ``safe_torch_load`` for the duration of one load.
_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("poster_pickle_budget", default=None)


def _current_budget() -> _Budget:
    # Outside safe_torch_load (the unpickler used on its own) no single allocation may be large.
    return _budget.get() or _Budget(ALLOCATION_SLACK)


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
    # A view (a stride of 0, say) can be far larger than its storage; whatever uses it may copy it.
    itemsize = getattr(getattr(storage, "dtype", None), "itemsize", 8)
    _current_budget().spend(_product(size) * itemsize, f"a tensor of shape {tuple(size)}")
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


def _product(shape: Any) -> int:
    try:
        dims = [int(d) for d in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,))]
    except (TypeError, ValueError):
        raise AllocationRefused(f"a shape that is not a list of integers ({type(shape).__name__})") from None
    if any(d < 0 for d in dims):
        raise AllocationRefused(f"a negative shape {tuple(dims)}")
    return math.prod(dims)


def _bytearray(*args: Any) -> bytearray:
    # bytearray(n) allocates n bytes; bytearray(data) or (str, encoding) only copies what the file holds.
    if args and isinstance(args[0], int):
        _current_budget().spend(int(args[0]), f"bytearray({int(args[0])})")
    return bytearray(*args)


def _ndarray(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
    _current_budget().spend(_product(shape) * np.dtype(dtype).itemsize, f"an array of shape {shape}")
    return np.ndarray(shape, dtype, *args, **kwargs)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _ndarray:  # the pickle's ``numpy.ndarray`` resolves to the counting constructor
        raise UnsafePickleError(f"numpy _reconstruct of {getattr(subtype, '__name__', subtype)!r}")
    subtype = np.ndarray
    _current_budget().spend(_product(shape) * np.dtype(dtype).itemsize, f"an array of shape {shape}")
    return np._core.multiarray._reconstruct(subtype, shape, dtype)


def _encode(obj: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles of numpy arrays store raw bytes through _codecs.encode(str, "latin1").
    return _codecs.encode(obj, encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("numpy", "ndarray"): _ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
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

    # torch.load sets ``persistent_load`` to a function that allocates each storage with the size the
    # pickle names; the storage's size is counted before torch allocates it.
    @property
    def persistent_load(self) -> Any:
        raise AttributeError("persistent_load")  # none until torch sets one

    @persistent_load.setter
    def persistent_load(self, load: Callable[[Any], Any]) -> None:
        seen: set[Any] = set()

        def counted(saved_id: Any) -> Any:
            if isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] == "storage":
                storage_type, key, numel = saved_id[1], saved_id[2], saved_id[4]
                if key not in seen:
                    seen.add(key)
                    _current_budget().spend(_storage_bytes(storage_type, numel), "a tensor storage")
            return load(saved_id)

        pickle.Unpickler.persistent_load.__set__(self, counted)


def _storage_bytes(storage_type: Any, numel: Any) -> int:
    if not isinstance(numel, int):
        raise AllocationRefused(f"a storage size that is not an integer ({type(numel).__name__})")
    dtype = getattr(storage_type, "dtype", None)
    itemsize = dtype.itemsize if isinstance(dtype, torch.dtype) else 1  # untyped storages count bytes
    return numel * itemsize


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
    budget = budget_for(os.path.getsize(path))
    _check_containers(path, label, budget)
    token = _budget.set(budget)
    try:
        return torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except AllocationRefused as exc:
        raise CheckpointError(f"refused to load {label}: {exc}") from None
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
    finally:
        _budget.reset(token)


def _check_containers(path: str, label: str, budget: _Budget) -> None:
    """Refuse a zip whose members unpack to more than the budget, and PyTorch's pre-2018 tar format
    (its storages name their own sizes, read before any check could run)."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError):
            return  # torch.load names the corruption
        if unpacked > budget.limit:
            raise CheckpointError(f"refused to load {label}: its zip members unpack to {_size(unpacked)}, "
                                  f"more than a file of this size can hold")
        return
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError:
        is_tar = False
    if is_tar:
        raise CheckpointError(f"{label} is in PyTorch's tar format (before version 0.4), which is not supported; "
                              "save it again with a current PyTorch")
