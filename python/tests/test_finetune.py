"""edgetune.finetune: the `edgetune finetune` command as a call. Its output is the command's, byte
for byte, for the same options; onnxruntime loads it from its path; the callback sees the run's
events and can stop it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import onnx
import pytest

import edgetune
from conftest import FASHION, MNIST, OUTPUT_TOL, ROOT, cli_binary, mnist, ort_run, ort_session, rel_err

DATA = f"idx:{MNIST}"


def test_finetune_is_the_command_and_deploys(tmp_path):
    events = []
    out = tmp_path / "digits.onnx"
    summary = edgetune.finetune(FASHION, DATA, out, val=DATA, steps=4, batch=16, seed=3, callback=events.append)

    # The command with the same options writes the same bytes.
    cli_out = tmp_path / "cli.onnx"
    args = ["finetune", FASHION, "--data", DATA, "--val", DATA, "--steps", "4", "--batch", "16", "--seed", "3"]
    subprocess.run([str(cli_binary()), *map(str, args), "--output", str(cli_out), "--quiet"], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    assert out.read_bytes() == cli_out.read_bytes()

    # onnxruntime, from the file's path, gives what edgetune gives on the written model
    # (design.md: outputs within 1e-4 of the output scale), and the file passes the checker.
    onnx.checker.check_model(str(out), full_check=True)
    x, _ = mnist("t10k", 50)
    assert rel_err(ort_run(out, x), edgetune.Session(out).run(x)) <= OUTPUT_TOL
    # What the run recorded for `edgetune infer` (README, "Finetune a folder of photos").
    meta = ort_session(out).get_modelmeta().custom_metadata_map
    assert (meta["preprocess"], meta["input_size"], meta["resize"]) == ("unit", "32x32", "stretch")

    # The events: started, a validation before training, 4 steps, a validation at the end.
    kinds = [e["event"] for e in events if e["event"] != "validating"]
    assert kinds == ["started", "validated", "step", "step", "step", "step", "validated"]
    assert events[0] == {"event": "started", "start": 0, "total": 4}
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    for e in steps:
        assert (e["epoch"], e["total"], e["lr"], e["skipped"]) == (1, 4, 1e-3, 0)
        assert e["loss"] > 0 and 0 <= e["accuracy"] <= 1 and e["images_per_s"] > 0
    first, last = [e for e in events if e["event"] == "validated"]
    assert (first["step"], first["before"], last["step"], last["epoch_end"]) == (0, True, 4, True)
    # Before training: tools/demo.sh's first line, "validation accuracy before: 0.1020 (loss
    # 5.7954)" (README), on the same 1,000 held-out digits; CPUs round differently (README), so
    # within 2 digits and 1e-3 of the loss.
    assert abs(first["accuracy"] - 0.1020) <= 0.002 and abs(first["loss"] - 5.7954) <= 1e-3 * 5.7954
    validating = [e for e in events if e["event"] == "validating"]
    assert validating[-1] == {"event": "validating", "done": 63, "total": 63}  # 1,000 digits, 16 a batch

    assert summary["output"] == str(out)
    assert (summary["start"], summary["total"], summary["images"], summary["skipped"]) == (0, 4, 64, 0)
    assert (summary["loss"], summary["accuracy"]) == (steps[-1]["loss"], steps[-1]["accuracy"])
    assert (summary["val_loss"], summary["val_accuracy"]) == (last["loss"], last["accuracy"])
    # The run's own check of the written file: its class probabilities reloaded vs trained.
    assert summary["max_diff"] <= 1e-4
    assert summary["notes"] == [] and summary["info"] == []


def test_callback_returning_false_stops_and_resume_continues(tmp_path):
    whole = tmp_path / "whole.onnx"
    edgetune.finetune(FASHION, DATA, whole, steps=4, batch=8)

    ck, out = tmp_path / "ck", tmp_path / "resumed.onnx"
    seen = []

    def stop_after_two(e):
        seen.append((e["event"], threading.get_ident()))
        return not (e["event"] == "step" and e["step"] == 2)

    with pytest.raises(edgetune.Stopped) as stopped:
        edgetune.finetune(FASHION, DATA, out, steps=4, batch=8, checkpoint=ck, callback=stop_after_two)
    e = stopped.value
    # The message the command prints when Ctrl-C stops it (README, "Stop and resume a run").
    assert str(e) == (f"interrupted after step 2 of 4; checkpoint saved in {ck} "
                      "(the same command with --resume continues)")
    assert e.kind == "stopped" and isinstance(e, edgetune.Error)
    assert not isinstance(e, (edgetune.InputError, edgetune.RunError))
    # Each event reached the callback on the thread that called finetune (docs/python.md).
    assert seen == [(kind, threading.get_ident()) for kind in ("started", "step", "step")]
    assert not out.exists()

    events = []
    summary = edgetune.finetune(FASHION, DATA, out, steps=4, batch=8, checkpoint=ck, resume=True,
                                callback=events.append)
    assert events[0] == {"event": "info", "message": f"resuming after step 2 of 4 from {ck}"}
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4]
    assert (summary["start"], summary["total"], summary["images"]) == (2, 4, 16)
    # README: a resumed run "gives the same bytes as a run that was never stopped".
    assert out.read_bytes() == whole.read_bytes()


def test_stop_without_a_checkpoint_writes_nothing(tmp_path):
    out = tmp_path / "never.onnx"
    message = r"^interrupted after step 1 of 3; nothing written \(--checkpoint DIR makes a run resumable\)$"
    with pytest.raises(edgetune.Stopped, match=message):
        edgetune.finetune(FASHION, DATA, out, steps=3, batch=4, callback=lambda e: e["event"] != "step")
    assert list(tmp_path.iterdir()) == []


def test_callback_exceptions_and_ctrl_c_end_the_run(tmp_path):
    out = tmp_path / "never.onnx"

    def fails(e):
        if e["event"] == "step":
            raise ValueError(f"no thanks at step {e['step']}")

    with pytest.raises(ValueError, match="no thanks at step 1"):
        edgetune.finetune(FASHION, DATA, out, steps=3, batch=4, callback=fails)

    # Ctrl-C while the run is inside the library, with no callback: the signal arrives from
    # another thread once the first step is done (the checkpoint of step 1 is written); the
    # run sees it at its next event and stops after the current step. Python's own SIGINT
    # handler is installed for the test: a process started in the background by a
    # non-interactive shell (`cmd &`, as a CI runner may) inherits SIGINT ignored, and Python then
    # keeps it ignored, so Ctrl-C would never reach it.
    ck = tmp_path / "ck"
    steps = 400

    def ctrl_c_after_the_first_step():
        while not (ck / "checkpoint.npz").exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        thread = threading.Thread(target=ctrl_c_after_the_first_step, daemon=True)
        thread.start()
        with pytest.raises(KeyboardInterrupt):
            edgetune.finetune(FASHION, DATA, out, steps=steps, batch=4, checkpoint=ck, checkpoint_every=1)
        thread.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    # Stopped after the current step, which was checkpointed, long before the last.
    assert not out.exists() and (ck / "checkpoint.npz").exists()
    with np.load(ck / "checkpoint.npz") as saved:  # its "meta" holds the JSON text's bytes
        step = json.loads(bytes(saved["meta"].astype(np.uint8)))["step"]
    assert 1 <= step < steps, step


def test_options_reach_the_run(tmp_path):
    # A new 12-way head trained alone (README, "Freeze the backbone"): the written model has
    # 12 outputs and the backbone's weights of the input model.
    out = tmp_path / "twelve.onnx"
    summary = edgetune.finetune(FASHION, DATA, out, steps=2, batch=4, num_classes=12, train="head",
                                optimizer="sgd", lr=0.01, momentum=0.5, schedule="cosine", grad_norm="gc",
                                augment=["crop", "flip"], shuffle=False, size=(32, 32), threads=1)
    assert summary["info"] == ["classifier replaced: 10 -> 12 classes"]
    x, _ = mnist("t10k", 4)
    assert ort_run(out, x).shape == (4, 12)
    original = {t.name: t for t in onnx.load(str(FASHION)).graph.initializer}
    for t in onnx.load(str(out)).graph.initializer:
        if not t.name.startswith("fc."):
            assert t == original[t.name], t.name
    assert np.isfinite(summary["loss"])
