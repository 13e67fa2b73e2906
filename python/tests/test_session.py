"""edgetune.Session against onnxruntime on the same model file and the same input: outputs within
1e-4 of the output scale (design.md, "Numerics"), and the declared inputs and outputs as
onnxruntime reads them."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import edgetune
from conftest import FASHION, MODELS, OUTPUT_TOL, mnist, ort_session, rel_err

TINY = sorted((MODELS / "tiny").glob("*.onnx"))
assert len(TINY) == 6, f"models/tiny holds the 6 tiny models (models/README.md), found {len(TINY)}"


def example_input(sess, batch: int, seed: int) -> np.ndarray:
    """Standard normal float32 at the model's declared shape, the symbolic batch set to `batch`."""
    shape = [d if isinstance(d, int) else batch for d in sess.get_inputs()[0].shape]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_resnet20_fashion_matches_onnxruntime_on_digits_and_noise():
    session = edgetune.Session(FASHION)
    ort = ort_session(FASHION)
    digits, _ = mnist("t10k", 16)
    noise = example_input(ort, 3, seed=1)
    for x in (digits, noise):
        want = ort.run(None, {"input": x})[0]
        got = session.run(x)
        assert got.dtype == np.float32 and got.shape == want.shape == (len(x), 10)
        assert rel_err(got, want) <= OUTPUT_TOL
    # Batch 1 after batch 16 (a second plan) and run_all, by output name.
    one = session.run_all(digits[:1])
    assert list(one) == ["logits"]
    assert rel_err(one["logits"], ort.run(None, {"input": digits[:1]})[0]) <= OUTPUT_TOL


@pytest.mark.parametrize("path", TINY, ids=[p.stem for p in TINY])
def test_tiny_models_match_onnxruntime(path):
    # The tiny models cover every op form edgetune supports (models/README.md), at opsets 9-21.
    session = edgetune.Session(path, threads=1)
    ort = ort_session(path)
    for batch in (2, 1):
        x = example_input(ort, batch, seed=batch)
        want = ort.run(None, {ort.get_inputs()[0].name: x})[0]
        assert rel_err(session.run(x), want) <= OUTPUT_TOL, path.name


def test_declared_inputs_and_outputs_are_onnxruntimes():
    for path in [FASHION, *TINY]:
        session, ort = edgetune.Session(path), ort_session(path)
        assert session.inputs == [(i.name, tuple(i.shape)) for i in ort.get_inputs()]
        assert session.outputs == [(o.name, tuple(o.shape)) for o in ort.get_outputs()]
    session = edgetune.Session(FASHION, threads=1)
    assert session.path == str(FASHION) and session.threads == 1
    assert repr(session) == f'edgetune.Session("{FASHION}", threads=1)'


def test_any_float_array_is_taken_as_float32():
    session = edgetune.Session(FASHION)
    x, _ = mnist("t10k", 4)
    want = session.run(x)
    # float64, a Fortran-ordered copy, a strided view and nested lists: the same float32 values.
    strided = np.stack([x, -x], axis=1)[:, 0]
    assert not strided.flags.c_contiguous
    for same in (x.astype(np.float64), np.asfortranarray(x), strided, x.tolist()):
        np.testing.assert_array_equal(session.run(same), want)
    with pytest.raises(TypeError, match="input 0: expected a floating-point array, got dtype int64"):
        session.run(np.zeros((1, 3, 32, 32), np.int64))


def test_runs_release_the_gil_and_may_overlap():
    # One worker thread for the model, so the other core is free for this (Python) thread.
    session = edgetune.Session(FASHION, threads=1)
    x = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    want = session.run(x)  # also makes the plan for this shape
    start = time.perf_counter()
    session.run(x)
    call = time.perf_counter() - start

    def python_work(n):
        total = 0
        for i in range(n):
            total += i
        return total

    # Pure-Python work sized to a tenth of a call (calibrated here, on this machine).
    n, took = 10_000, 0.0
    while took < call / 10:
        n *= 2
        start = time.perf_counter()
        python_work(n)
        took = time.perf_counter() - start
    # Once the worker is inside run(), this thread does that work. Holding the GIL, run() would
    # keep it from starting until the call returned, so it would end after the call; released,
    # it ends within the call (a tenth of it, so CPU contention has a margin of ~9 tenths).
    results, inside, returned = [], threading.Event(), []

    def worker():
        inside.set()
        results.append(session.run(x))
        returned.append(time.perf_counter())

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait()
    python_work(n)
    worked = time.perf_counter()
    thread.join()
    assert worked < returned[0], "Python work on another thread waited for run() to return"
    # Calls from several threads at once give what one call gives.
    with ThreadPoolExecutor(2) as pool:
        for got in [*results, *pool.map(session.run, [x] * 2)]:
            np.testing.assert_array_equal(got, want)
