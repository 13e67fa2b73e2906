"""edgetune from Python: run an ONNX model, compute its gradients, finetune it step by step or
as a whole (``edgetune finetune``), and export it as ONNX again.

Everything is implemented in the native module ``edgetune._native`` (Rust); this package
re-exports it. The API, with its documentation, is in ``__init__.pyi`` beside this file.
"""

from edgetune._native import (
    Error,
    InputError,
    RunError,
    Session,
    Stopped,
    Trainer,
    __version__,
    finetune,
    grad,
)

__all__ = [
    "Error",
    "InputError",
    "RunError",
    "Session",
    "Stopped",
    "Trainer",
    "__version__",
    "finetune",
    "grad",
]
