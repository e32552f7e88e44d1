"""A CPU stand-in for a second device: catch host tensors mixed with the model's tensors.

On a CPU-only machine every tensor is on the CPU, so a mask built with ``torch.tensor(...)`` (no
``device=``) and then used with the model's ids works here and fails on a GPU ("Expected all tensors to
be on the same device"). :class:`HostTensorGuard` tracks where each tensor came from instead of where it
is: a tensor made by a factory without an explicit device (``torch.tensor``, ``torch.zeros``, ...), by
``torch.from_numpy`` or by ``.cpu()`` is a *host* tensor, and so is anything computed from host tensors
only; a tensor that went through ``.to(device)`` or was made with ``device=`` is a *device* tensor, and so
are the model's parameters and everything computed from them. An operation that combines a device tensor
with a host tensor of one element or more dimensions, or draws with a generator made without a device
into a device tensor, is recorded with the project line that called it: exactly what a GPU would refuse.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[2]
_TORCH = str(Path(torch.__file__).parent)
_HERE = str(Path(__file__).resolve())

FACTORIES = {
    torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace,
    torch.logspace, torch.eye, torch.rand, torch.randn, torch.randint, torch.randperm, torch.scalar_tensor,
}
# combining devices is what these are for
CROSSING = {torch.Tensor.copy_, torch.Tensor.to, torch.Tensor.type_as, torch.Tensor.new_tensor,
            torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_full, torch.Tensor.new_empty}


@dataclass(frozen=True)
class Mixing:
    where: str  # path:line in the project (or the first frame outside torch)
    operation: str
    detail: str


class HostTensorGuard(TorchFunctionMode):
    """Use as a context manager (with :meth:`patch` applied by the caller for ``torch.from_numpy`` and
    ``torch.Generator``, which torch functions modes do not see); ``mixings`` lists what a GPU would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self._host: dict[int, weakref.ref] = {}  # id -> weak reference (tensors compare elementwise)
        self.host_generators: list[torch.Generator] = []  # kept alive: a generator is not weak-referenceable
        self.mixings: list[Mixing] = []

    def patch(self, monkeypatch) -> "HostTensorGuard":
        from_numpy, generator = torch.from_numpy, torch.Generator

        def host_from_numpy(array):
            tensor = from_numpy(array)
            self._mark(tensor)
            return tensor

        def host_aware_generator(device=None):
            made = generator() if device is None else generator(device=device)
            if device is None:
                self.host_generators.append(made)
            return made

        monkeypatch.setattr(torch, "from_numpy", host_from_numpy)
        monkeypatch.setattr(torch, "Generator", host_aware_generator)
        return self

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
        host = [x for x in leaves if self.is_host(x)]
        on_device = [x for x in leaves if not self.is_host(x)]
        if func not in CROSSING and on_device:
            shaped = [x for x in host if x.dim() > 0]
            if shaped:
                self._record(func, f"host tensor(s) of shape {[tuple(x.shape) for x in shaped]} "
                                   f"with device tensor(s) of shape {[tuple(x.shape) for x in on_device]}")
            generator = kwargs.get("generator")
            if generator is not None and any(generator is g for g in self.host_generators):
                self._record(func, "a generator made without a device draws into a device tensor")
        out = func(*args, **kwargs)
        if func is torch.Tensor.cpu and out is args[0]:
            return out  # already on the CPU here; on a GPU this would be a host copy, the original untouched
        outputs = [x for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor)]
        if self._makes_host(func, args, kwargs, leaves, host):
            for x in outputs:
                self._mark(x)
        else:
            for x in outputs:
                self._host.pop(id(x), None)  # e.g. ``x.to(device)`` returning x itself when it is already there
        return out

    def is_host(self, tensor: torch.Tensor) -> bool:
        ref = self._host.get(id(tensor))
        return ref is not None and ref() is tensor

    def _mark(self, tensor: torch.Tensor) -> None:
        self._host[id(tensor)] = weakref.ref(tensor)

    @staticmethod
    def _makes_host(func, args, kwargs, leaves, host) -> bool:
        if func in FACTORIES:
            return kwargs.get("device") is None
        if func is torch.Tensor.cpu:
            return True
        if func is torch.Tensor.to:
            explicit = "device" in kwargs or any(isinstance(a, (torch.device, str, torch.Tensor)) for a in args[1:])
            return not explicit and bool(host) and host[0] is args[0]
        return bool(leaves) and len(host) == len(leaves)

    def _record(self, func, detail: str) -> None:
        frame = sys._getframe(2)
        first = None
        while frame is not None:
            name = frame.f_code.co_filename
            if not name.startswith(_TORCH) and name != _HERE:
                first = first or f"{name}:{frame.f_lineno}"
                if name.startswith(str(ROOT)) and "/.venv/" not in name and "/tests/" not in name:
                    first = f"{Path(name).relative_to(ROOT)}:{frame.f_lineno}"
                    break
            frame = frame.f_back
        self.mixings.append(Mixing(first or "?", getattr(func, "__qualname__", str(func)), detail))
