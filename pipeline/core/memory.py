"""Peak tensor memory of a few training steps, on any device.

CUDA has an allocator counter. On CPU there is none, so a dispatch mode adds up the bytes of
every storage that an op creates and subtracts them when the storage is freed; tensors that
exist before (parameters, optimizer state) are counted once as the baseline.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _LiveStorageBytes(TorchDispatchMode):
    def __init__(self, baseline: int) -> None:
        super().__init__()
        self.live = self.peak = baseline
        self._seen: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self._seen:
                continue  # a view or in-place result of storage already counted
            self._seen.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            # The storage outlives this tensor only through views; counting to the first
            # tensor's death slightly under-counts those, never over-counts.
            weakref.finalize(t, self._release, key, nbytes)
        return out


def _existing_bytes(objects: list[torch.Tensor]) -> int:
    seen, total = set(), 0
    for t in objects:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            total += st.nbytes()
    return total


class PeakMemory:
    """Context manager: `peak_bytes` after exit is the peak tensor memory inside it."""

    def __init__(self, device: torch.device, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.device, self.peak_bytes = device, 0
        state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        self._baseline = _existing_bytes(list(model.parameters()) + grads + state)
        self._mode: _LiveStorageBytes | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._mode = _LiveStorageBytes(self._baseline)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)
            self.peak_bytes = self._mode.peak
        else:
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
