"""Functions that take their process down or never return: for crash isolation tests."""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import torch
from torch.autograd import Function


class _Identity(Function):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class Aborts(_Identity):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        os.abort()


class Segfaults(_Identity):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctypes.string_at(0)  # reads address 0
        return x


class Hangs(_Identity):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        time.sleep(3600)
        return x


class ExitsTheProcess(_Identity):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        os._exit(3)


class AllocatesTooMuch(_Identity):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x + torch.empty(2**50, dtype=torch.uint8).sum()  # a petabyte


class HangsInHalf(_Identity):
    """Right in float64 and float32; never returns in float16 (low_precision's dtype)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float16:
            time.sleep(3600)
        return x.clone()
