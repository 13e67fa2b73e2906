//! Checkpoint and resume: a finetune run killed with SIGKILL mid-epoch and resumed from its last
//! checkpoint writes a final ONNX byte-identical to an uninterrupted run with the same seed and
//! thread count (which is itself byte-identical to a run without checkpoints). A resume with
//! other options is refused. Ctrl-C stops a run after its current step with a checkpoint that
//! resumes it exactly.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn dataset(dir: &Path) -> String {
    let n = 40;
    let x = edgetune::Tensor::from_vec([n, 3, 32, 32], edgetune::tensor::lcg_values(n * 3 * 32 * 32, 11));
    let y: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    let p = dir.join("train.npz");
    write_xy_npz(&p, &x, &y);
    format!("npz:{}", p.display())
}

fn args<'a>(model: &'a str, data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    // Epochs of 5 steps, shuffled and augmented: the resume must restore the epoch's order, the
    // position in it and the augmentation.
    vec![
        "finetune",
        model,
        "--data",
        data,
        "--output",
        out,
        "--steps",
        steps,
        "--batch",
        "8",
        "--seed",
        "7",
        "--threads",
        "2",
        "--augment",
        "crop,flip",
        "--quiet",
    ]
}

/// Waits until `ck` holds a checkpoint, or the child has exited.
fn wait_for_checkpoint(child: &mut std::process::Child, ck: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Path::new(ck).join("checkpoint.npz").exists() && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_and_resumed_run_equals_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let model = model.to_str().unwrap();
    let data = dataset(d.path());
    let out = |n: &str| d.path().join(n).display().to_string();

    let (plain, full, resumed) = (out("plain.onnx"), out("full.onnx"), out("resumed.onnx"));
    let (code, _, err) = edgetune(&args(model, &data, &plain, "10"));
    assert_eq!(code, 0, "{err}");
    let ck_full = out("ck_full");
    let mut a = args(model, &data, &full, "10");
    a.extend(["--checkpoint", &ck_full, "--checkpoint-every", "3"]);
    let (code, _, err) = edgetune(&a);
    assert_eq!(code, 0, "{err}");
    let bytes = |p: &str| std::fs::read(p).unwrap();
    assert!(bytes(&plain) == bytes(&full), "checkpointing must not change the result");

    // The same run, killed as soon as its first checkpoint (after step 3, mid-epoch 1) exists.
    let (ck, log) = (out("ck"), out("log.jsonl"));
    let mut a = args(model, &data, &resumed, "10");
    a.extend(["--checkpoint", &ck, "--checkpoint-every", "3", "--log", &log]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgetune")).args(&a).spawn().unwrap();
    // If it finishes before the kill, the resume below starts from its end.
    wait_for_checkpoint(&mut child, &ck);
    child.kill().ok(); // SIGKILL on unix
    child.wait().unwrap();
    assert!(!Path::new(&resumed).exists(), "killed before the end: no output written");

    a.push("--resume");
    let (code, stdout, err) = edgetune(&a);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("resuming after step"), "{stdout}");
    assert!(bytes(&resumed) == bytes(&full), "resumed run differs from the uninterrupted one");
    // The log holds each step once: rows the killed run wrote past its checkpoint are replaced.
    let steps: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=10).collect::<Vec<u64>>(), "one row per step");

    // Other options with the same checkpoint folder are refused, naming the one that differs.
    let mut other = args(model, &data, &resumed, "10");
    other.extend(["--checkpoint", &ck, "--resume", "--lr", "0.5"]);
    assert_bad_input(&other, "--lr 0.001 (now 0.5)");
}

#[test]
fn a_finished_run_continues_to_more_steps() {
    // A run of 4 steps, then the same command with --steps 10 --resume (its paths spelled
    // another way) equals an uninterrupted 10-step run: the constant schedule does not depend
    // on the run's length, and the checkpoint after the last step holds the whole state.
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let model = model.to_str().unwrap();
    let data = dataset(d.path());
    let out = |n: &str| d.path().join(n).display().to_string();
    let (plain, continued, ck) = (out("plain.onnx"), out("continued.onnx"), out("ck"));
    let (code, _, err) = edgetune(&args(model, &data, &plain, "10"));
    assert_eq!(code, 0, "{err}");
    let mut first = args(model, &data, &continued, "4");
    first.extend(["--checkpoint", &ck]);
    let (code, _, err) = edgetune(&first);
    assert_eq!(code, 0, "{err}");

    let data_again = format!("npz:{}/./train.npz", d.path().display());
    let mut more = args(model, &data_again, &continued, "10");
    more.extend(["--checkpoint", &ck, "--resume"]);
    let (code, stdout, err) = edgetune(&more);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("resuming after step 4 of 10"), "{stdout}");
    assert!(std::fs::read(&continued).unwrap() == std::fs::read(&plain).unwrap(), "continued run differs");

    // Fewer steps than the checkpoint holds, or no checkpoint at all: one-line errors.
    let mut fewer = args(model, &data, &continued, "3");
    fewer.extend(["--checkpoint", &ck, "--resume"]);
    assert_bad_input(&fewer, "past this run's 3 steps");
    let missing = out("no-such-folder");
    let mut none = args(model, &data, &continued, "10");
    none.extend(["--checkpoint", &missing, "--resume"]);
    assert_bad_input(&none, "no checkpoint");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_that_resumes_exactly() {
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let model = model.to_str().unwrap();
    let data = dataset(d.path());
    let out = |n: &str| d.path().join(n).display().to_string();
    let (full, resumed, ck) = (out("full.onnx"), out("resumed.onnx"), out("ck"));
    // Long enough that the signal lands mid-run.
    let (code, _, err) = edgetune(&args(model, &data, &full, "300"));
    assert_eq!(code, 0, "{err}");

    // Checkpoints only at epoch ends (every 5 steps): the one after SIGINT is written on request.
    let mut a = args(model, &data, &resumed, "300");
    a.extend(["--checkpoint", &ck, "--checkpoint-every", "1000"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgetune"))
        .args(&a)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&mut child, &ck);
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.starts_with("error: interrupted after step ") && err.contains("--resume"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!Path::new(&resumed).exists(), "stopped before the end: no output written");
    let leftovers: Vec<_> = std::fs::read_dir(&ck).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["checkpoint.npz"], "only the complete checkpoint is left");

    a.push("--resume");
    let (code, stdout, err) = edgetune(&a);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("resuming after step"), "{stdout}");
    assert!(std::fs::read(&resumed).unwrap() == std::fs::read(&full).unwrap(), "resumed run differs");
}
