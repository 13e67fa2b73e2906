"""edgetune from Python: run an ONNX image classifier, compute its gradients, finetune it step
by step (`Trainer`) or as a whole (`finetune`, the `edgetune finetune` command), and export it as
ONNX again. Arrays go in and come out as numpy arrays.

Every call that runs a model releases the GIL while it works. Errors are `edgetune.Error`
subclasses whose message is the one line the `edgetune` command prints after `error: ` for the
same mistake.
"""

import os
from typing import Any, Callable, Literal, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str
"""The version of the edgetune bindings (that of the `edgetune-python` crate)."""

_Path = Union[str, "os.PathLike[str]"]
_Array = npt.ArrayLike
_Float32 = npt.NDArray[np.float32]
_Shape = tuple[Union[int, str, None], ...]

_Bn = Literal["auto", "train", "frozen"]
_Device = Literal["cpu", "cuda"]
_Optimizer = Literal["sgd", "adam", "adamw"]

# ----------------------------------------------------------------------------- errors


class Error(Exception):
    """Any failure edgetune reports. `str(e)` is the library's one-line message, the line the
    `edgetune` command prints after `error: ` for the same mistake (a file, a node, an op or an
    option is named in it)."""

    kind: str
    """The class of error: `config` (an option value), `data`, `invalid-model`,
    `unsupported` (an op edgetune does not run or train), `node` (a node of the model
    failed), `io`, `non-finite`, `runtime`, `device` or `stopped`."""


class InputError(Error):
    """The input is at fault: a file, a model, data, an array's shape, an option value, a
    device that cannot run (kinds `config`, `data`, `invalid-model`, `unsupported`, `node`,
    `io`, `device`). The `edgetune` command exits with code 2 for these."""


class RunError(Error):
    """A failure while running: NaN or infinite values, a runtime failure (kinds `non-finite`,
    `runtime`; the command exits with code 1 for these). A panic inside the library is one too, with a message
    starting `internal error:` (a Trainer that raised it refuses further calls)."""


class Stopped(Error):
    """A `finetune` run stopped on request: its callback returned False. The message says
    after which step and what was saved (`interrupted after step 2 of 5; nothing written
    (--checkpoint DIR makes a run resumable)`)."""


# ----------------------------------------------------------------------------- inference


class Session:
    """An ONNX model loaded once and run on numpy batches. A plan is made per input shape and
    cached, so the first call at a new shape is slower than the next. `run` may be called
    from several threads at once."""

    def __init__(self, path: _Path, *, threads: int = 0) -> None:
        """Loads the ONNX model at `path` (external data beside it is memory-mapped).

        Args:
            path: the `.onnx` file.
            threads: worker threads that run the model (0: one per core).

        Raises:
            InputError: the file is missing or not a model edgetune runs (an unsupported op
                is named with its node).
        """

    def run(self, *inputs: _Array) -> _Float32:
        """The first graph output on `inputs`, one array per graph input (in the model's
        order), as `edgetune infer --input X.npy --output Y.npy` computes it.

        Args:
            inputs: floating-point arrays (float16, float32, float64, or anything
                `numpy.asarray` makes one of; used as float32). The batch size is free, and so
                is the spatial size of a model that is convolutional up to a global pooling.

        Returns:
            A float32 array of the output's shape.

        Raises:
            TypeError: an input is not a floating-point array.
            InputError: an input's shape does not fit the model (kind `data`).
        """

    def run_all(self, *inputs: _Array) -> dict[str, _Float32]:
        """Every graph output on `inputs`, by output name, in the model's order (arguments
        as `run`)."""

    @property
    def inputs(self) -> list[tuple[str, _Shape | None]]:
        """The graph inputs as `(name, shape)`: a shape holds sizes, names of symbolic dims
        (`'N'`) and `None` for an unnamed dim; the shape is `None` where the model declares
        none."""

    @property
    def outputs(self) -> list[tuple[str, _Shape | None]]:
        """The graph outputs, as `inputs`."""

    @property
    def path(self) -> str:
        """The model's path, as given."""

    @property
    def threads(self) -> int:
        """The worker threads that run the model."""


# ----------------------------------------------------------------------------- gradients


def grad(
    model_path: _Path,
    x: _Array,
    labels: _Array,
    *,
    train: str = "all",
    bn: _Bn = "auto",
    threads: int = 0,
    device: _Device = "cpu",
) -> dict[str, _Float32]:
    """One forward and backward pass on a labelled batch: what `edgetune grad` writes.

    The loss is the mean softmax cross-entropy on the first graph output (a trailing Softmax
    is skipped and its input taken as the logits), as `torch.nn.functional.cross_entropy`.

    Args:
        model_path: the `.onnx` file.
        x: the batch for the first graph input (floating point, used as float32; axis 0 is the
            batch).
        labels: one integer class label per sample (1-D).
        train: which initializers get a gradient: `"all"`, `"head"` (the classifier) or a
            regular expression on initializer names (BatchNorm running statistics never).
        bn: BatchNorm: `"train"` (batch statistics, as PyTorch's `model.train()`), `"frozen"`
            (running statistics, `model.eval()`), `"auto"` (train where the layer's scale or
            bias trains, frozen elsewhere).
        threads: worker threads (0: one per core).
        device: `"cpu"`, or `"cuda"` (a build with the `cuda` feature and an NVIDIA GPU).

    Returns:
        `"loss"` (a 0-d float32 array), then one float32 array per trainable initializer,
        keyed by its ONNX name and shaped as the initializer, in the model's order.

    Raises:
        TypeError: `x` is not floating point, or `labels` not integer.
        InputError: a missing or unsupported model, a shape that does not fit, a label out of
            range, a bad option value.
    """


# ----------------------------------------------------------------------------- training


class Trainer:
    """A model being trained one optimizer step at a time: forward, loss, backward, the
    gradient transform (ZNorm by default), the optimizer; BatchNorm running statistics are
    carried from step to step. `export` writes the model with the trained weights.

    Calls on one trainer are serialized (they may come from several threads); each releases
    the GIL while it works.
    """

    def __init__(
        self,
        model_path: _Path,
        *,
        optimizer: _Optimizer = "adam",
        lr: float = 1e-3,
        grad_norm: str = "znorm",
        train: str = "all",
        bn: _Bn = "auto",
        num_classes: int | None = None,
        seed: int = 0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        znorm_eps: float = 1e-8,
        znorm_scope: Literal["all", "matrices"] = "all",
        threads: int = 0,
        device: _Device = "cpu",
    ) -> None:
        """A trainer on the model at `model_path`, with `edgetune finetune`'s defaults.

        Args:
            model_path: the `.onnx` file (read once; never written).
            optimizer: `"sgd"`, `"adam"` or `"adamw"`, as torch.optim (Adam betas 0.9, 0.999,
                eps 1e-8, bias correction; SGD's momentum buffer starts as the first gradient).
            lr: the learning rate `step` uses when given none (a finite number > 0).
            grad_norm: the gradient transform before the optimizer: `"znorm"` (each tensor
                standardized: (g - mean) / (std + znorm_eps)), `"gc"` (Gradient
                Centralization), `"clip:MAXNORM"` (clip to a global L2 norm) or `"none"`.
            train: which initializers train: `"all"`, `"head"` or a regex on names.
            bn: BatchNorm while training: `"train"`, `"frozen"` or `"auto"` (see `grad`).
            num_classes: replace the classifier by a fresh `num_classes`-way one (initialised
                as `torch.nn.Linear`, from `seed`); None keeps it.
            seed: seed of a new classifier's initialisation (>= 0).
            momentum: SGD momentum, in [0, 1).
            weight_decay: L2 penalty (SGD, Adam) or decoupled decay (AdamW), >= 0.
            nesterov: Nesterov momentum (SGD).
            znorm_eps: ZNorm's epsilon, > 0.
            znorm_scope: ZNorm on every tensor (`"all"`) or only on weights with more than one
                dimension (`"matrices"`).
            threads: worker threads (0: one per core).
            device: `"cpu"`, or `"cuda"` (a build with the `cuda` feature and an NVIDIA GPU).

        Raises:
            InputError: a missing or unsupported model, a bad option value (the message the
                `edgetune finetune` command gives for the same value), a `train` regex that
                matches no initializer.
        """

    def step(self, x: _Array, y: _Array, *, lr: float | None = None) -> tuple[float, float]:
        """One optimizer step on the batch `x` with integer labels `y`.

        Args:
            x: the batch (floating point, used as float32; axis 0 is the batch).
            y: one integer class label per sample.
            lr: this step's learning rate (default: the trainer's `lr`), for a schedule of
                your own.

        Returns:
            The batch's loss (mean cross-entropy) and accuracy, before the update.

        Raises:
            InputError: a shape that does not fit, a label out of range.
            RunError: the loss or a gradient is NaN or infinite (kind `non-finite`; nothing
                was changed).
        """

    def logits(self, x: _Array) -> _Float32:
        """The first graph output on `x` with the current weights, BatchNorm on its running
        statistics (inference, as the exported model computes it)."""

    def evaluate(self, x: _Array, y: _Array) -> tuple[float, float]:
        """Loss and accuracy on `x` with labels `y`, with the current weights (BatchNorm on its
        running statistics); nothing changes."""

    def export(self, path: _Path) -> None:
        """Writes the model with the trained weights and running statistics to `path`,
        atomically (a temporary file in the same folder, then a rename). The rest of the file
        (nodes, names, opset, metadata) is as the input model has it; external data goes to
        `<path>.data` when the input keeps its tensors outside the `.onnx` file.

        Raises:
            InputError: the folder cannot be written (kind `io`).
        """

    def values(self) -> dict[str, _Float32]:
        """The trained weights, then the BatchNorm running statistics, by initializer name
        (copies)."""

    @property
    def trainable(self) -> list[str]:
        """The names of the initializers that train, in the model's order."""

    @property
    def steps(self) -> int:
        """Optimizer steps taken."""

    @property
    def lr(self) -> float:
        """The learning rate `step` uses when given none."""


# ----------------------------------------------------------------------------- finetune


class _Info(TypedDict):
    event: Literal["info"]
    message: str


class _Note(TypedDict):
    event: Literal["note"]
    message: str


class _Started(TypedDict):
    event: Literal["started"]
    start: int
    total: int


class _Validating(TypedDict):
    event: Literal["validating"]
    done: int
    total: int


class _Validated(TypedDict):
    event: Literal["validated"]
    step: int
    epoch: int
    before: bool
    epoch_end: bool
    accuracy: float
    loss: float


class _Step(TypedDict):
    event: Literal["step"]
    step: int
    epoch: int
    total: int
    loss: float | None
    accuracy: float | None
    lr: float
    images_per_s: float | None
    skipped: int


class _Checkpointing(TypedDict):
    event: Literal["checkpointing"]
    step: int
    dir: str


_Event = Union[_Info, _Note, _Started, _Validating, _Validated, _Step, _Checkpointing]
"""What `finetune` passes to its callback (type-checking only): a dict whose `event` key names
it. `info`, `note` (`message`): what the run decided, a note on the data or options;
`started` (`start`, `total`): training starts after step `start` of `total`; `validating`
(`done`, `total` batches); `validated` (`step`, `epoch`, `before`: ahead of the first step,
`epoch_end`, `accuracy`, `loss`); `step` (`step` 1-based, `epoch`, `total`, `loss`,
`accuracy` of the batch, `lr`, `images_per_s`, `skipped`; loss and accuracy are None for a
step skipped with `on_nonfinite="skip"`); `checkpointing` (`step`, `dir`)."""


class _Summary(TypedDict):
    """What `finetune` returns (type-checking only)."""

    output: str
    """The model written."""
    start: int
    """The step this run started after (a resumed run's checkpoint; else 0)."""
    total: int
    """The run's last step."""
    images: int
    """Images this run trained on."""
    train_secs: float
    """Seconds of training (validation excluded)."""
    loss: float | None
    """The last step's batch loss."""
    accuracy: float | None
    """The last step's batch accuracy."""
    val_loss: float | None
    """The last validation's loss (None without `val`)."""
    val_accuracy: float | None
    """The last validation's accuracy (None without `val`)."""
    skipped: int
    """Steps left out for NaN or infinite values (`on_nonfinite="skip"`)."""
    max_diff: float
    """Largest difference between the written model's class probabilities (reloaded from the
    file) and the trained model's on a probe batch."""
    notes: list[str]
    """The run's notes (files skipped, a batch larger than the data, ...)."""
    info: list[str]
    """What the run decided (a replaced head, the device, a resume)."""


def finetune(
    model: _Path,
    data: str,
    output: _Path,
    *,
    val: str | None = None,
    val_every: int | None = None,
    size: int | tuple[int, int] | str | None = None,
    preprocess: Literal["imagenet", "caffe", "unit"] | None = None,
    resize: Literal["stretch", "crop"] | None = None,
    overwrite: bool | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    batch: int | None = None,
    optimizer: _Optimizer | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    nesterov: bool | None = None,
    weight_decay: float | None = None,
    schedule: Literal["constant", "cosine", "step"] | None = None,
    warmup: int | None = None,
    grad_norm: str | None = None,
    znorm_eps: float | None = None,
    znorm_scope: Literal["all", "matrices"] | None = None,
    num_classes: int | None = None,
    train: str | None = None,
    bn: _Bn | None = None,
    augment: str | Sequence[str] | None = None,
    shuffle: bool | None = None,
    seed: int | None = None,
    checkpoint: _Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool | None = None,
    on_nonfinite: Literal["abort", "skip"] | None = None,
    threads: int | None = None,
    device: _Device | None = None,
    callback: Callable[[_Event], Any] | None = None,
) -> _Summary:
    """The whole `edgetune finetune MODEL --data DATA --output OUTPUT [options]` run: load the
    model and the data, optionally replace the classifier, train, validate, checkpoint, write
    the updated model and check it by reloading it. Each keyword is the command's option of
    the same name (`grad_norm` is `--grad-norm`); None (the default) takes the command's
    default. Nothing is printed: the events go to `callback`.

    Args:
        model: the ONNX model (read, never changed unless `output` names it and `overwrite`).
        data: training data: `"npz:FILE"` (arrays `x` N×C×H×W float32 and `y` N integer
            labels), `"idx:DIR"` (MNIST/Fashion-MNIST idx files, the `train-*` ones),
            `"cifar:DIR"` (CIFAR-10 binary) or `"folder:DIR"` (one sub-folder of images per
            class, the sorted folder names being the classes).
        output: the updated model, written atomically at the end.
        val: validation data (same forms; idx reads `t10k-*`), evaluated before training and
            after each epoch.
        val_every: also validate every N steps (needs `val`; default 0: only per epoch).
        size: the training size for image data: `H`, `(H, W)` or `"HxW"` (default: what the
            model records, else its declared size, else the images').
        preprocess: image preprocessing (default: what the model records, else `"unit"`,
            pixels / 255).
        resize: how images reach `size` (default: what the model records, else `"stretch"`).
        overwrite: allow `output` to replace the input model (default False).
        epochs: passes over the data (default 1; ignored with `steps`).
        steps: exactly this many optimizer steps.
        batch: images per step (default 32).
        optimizer: `"sgd"`, `"adam"` (default) or `"adamw"`.
        lr: the learning rate, the schedule's peak (default 1e-3).
        momentum: SGD momentum in [0, 1) (default 0.9).
        nesterov: Nesterov momentum (default False).
        weight_decay: L2 penalty or decoupled decay (AdamW), >= 0 (default 0).
        schedule: after the warm-up: `"constant"` (default), `"cosine"` (to 0 at the last
            step) or `"step"` (x0.1 after each third of the run).
        warmup: linear warm-up steps (default 0).
        grad_norm: `"znorm"` (default), `"gc"`, `"clip:MAXNORM"` or `"none"`.
        znorm_eps: ZNorm's epsilon (default 1e-8).
        znorm_scope: `"all"` (default) or `"matrices"`.
        num_classes: replace the classifier by a fresh K-way one.
        train: which initializers train: `"all"` (default), `"head"` or a regex on names.
        bn: `"auto"` (default), `"train"` or `"frozen"` (see `grad`).
        augment: `"crop"` (pad 4, random crop) and/or `"flip"`, as `"crop,flip"` or a list
            (default none).
        shuffle: batches in a seeded random order per epoch (default True; False is the
            command's `--no-shuffle`, file order).
        seed: seed of the shuffling, the augmentation and a new classifier (default 0).
        checkpoint: a folder for checkpoints (every `checkpoint_every` steps, at the end of
            each epoch, when stopped).
        checkpoint_every: steps between checkpoints (default 100).
        resume: continue from the checkpoint in `checkpoint` (same options required).
        on_nonfinite: a step with NaN or infinite values: `"abort"` (default; RunError) or
            `"skip"` (left out, counted).
        threads: worker threads (default 0: one per core).
        device: `"cpu"` (default) or `"cuda"`.
        callback: called with each event (a dict, see `_Event`) on the calling thread, the GIL
            held; returning False stops the run after the current step (`Stopped` is raised,
            after the checkpoint is saved when there is a `checkpoint` folder). An exception
            it raises stops the run too and is raised again by `finetune`. Ctrl-C
            (KeyboardInterrupt) also stops the run after the current step.

    Returns:
        A summary of the run (a dict, see `_Summary`).

    Raises:
        InputError: a missing model or data, a bad option value (the message the command
            prints for the same value: `invalid value 'adamx' for '--optimizer <OPTIMIZER>'
            [possible values: sgd, adam, adamw]`), an unwritable output.
        RunError: NaN or infinite values with `on_nonfinite="abort"`.
        Stopped: the callback returned False.
    """

