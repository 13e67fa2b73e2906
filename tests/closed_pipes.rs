//! A closed stdout or stderr (`edgetune ... | head -3`, `2>&1 | head -c 0`) never panics, and
//! never stops a training run from writing its model and its log.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Runs edgetune with stdout (and, with `both`, stderr) a pipe whose reading end is closed at
/// once; returns the exit code and whatever stderr said (empty when it was closed too).
fn with_closed_pipe(args: &[&str], both: bool) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgetune"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let err = if both {
        drop(child.stderr.take());
        String::new()
    } else {
        use std::io::Read;
        let mut s = String::new();
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    (child.wait().unwrap().code(), err)
}

#[test]
fn infer_with_its_stdout_closed_does_not_panic() {
    // 1000 classes, far more than a pipe buffer: the writes after the close fail.
    let f = fixtures();
    let (model, photo) = (f.join("models/resnet50_imagenet.onnx"), f.join("images/chelsea.png"));
    let args = ["infer", model.to_str().unwrap(), "--image", photo.to_str().unwrap(), "--top", "1000"];
    let (code, err) = with_closed_pipe(&args, false);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn finetune_with_stdout_and_stderr_closed_writes_its_model_and_log() {
    let d = tempfile::tempdir().unwrap();
    let x = edgetune::Tensor::from_vec([8, 3, 32, 32], edgetune::tensor::lcg_values(8 * 3 * 32 * 32, 4));
    let data = d.path().join("train.npz");
    write_xy_npz(&data, &x, &[0, 1, 2, 3, 4, 5, 6, 7]);
    let spec = format!("npz:{}", data.display());
    let (out, log) = (d.path().join("out.onnx"), d.path().join("log.jsonl"));
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let args = [
        "finetune",
        model.to_str().unwrap(),
        "--data",
        &spec,
        "--val",
        &spec,
        "--output",
        out.to_str().unwrap(),
        "--steps",
        "1",
        "--log",
        log.to_str().unwrap(),
        "--batch",
        "100",
    ];
    // --batch 100 on 8 samples also makes it write a note to the closed stderr.
    let (code, _) = with_closed_pipe(&args, true);
    assert_eq!(code, Some(0));
    assert!(edgetune::onnx::load(&out).is_ok(), "the model is written");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3, "validation, 1 step, validation");
}
