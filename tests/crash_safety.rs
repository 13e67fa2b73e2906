//! Crash safety: finetune killed with SIGKILL at 20 random moments of a run (during steps, during
//! the checkpoint written after every step, during export). After each kill the output is absent
//! or complete, the checkpoint is absent or resumes the run to the uninterrupted result byte for
//! byte, and the input model is unchanged. Two runs writing one output leave one complete file.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

/// The `k`-th of a fixed sequence of uniform draws in [0, 1) (SplitMix64, seed 2026).
fn draw(k: u32) -> f64 {
    let mut z = 2026u64.wrapping_add((k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as f64 / 2f64.powi(64)
}

#[cfg(unix)]
#[test]
fn twenty_kills_leave_complete_files() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model.onnx");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/models/pretrained/resnet20_fashion.onnx"), &model).unwrap();
    let model_bytes = std::fs::read(&model).unwrap();
    let n = 32;
    let x = edgetune::Tensor::from_vec([n, 3, 32, 32], edgetune::tensor::lcg_values(n * 3 * 32 * 32, 5));
    let data = d.path().join("d.npz");
    write_xy_npz(&data, &x, &(0..n as i64).map(|i| i % 10).collect::<Vec<_>>());
    let spec = format!("npz:{}", data.display());
    let args = |dir: &Path| -> Vec<String> {
        let p = |n: &str| dir.join(n).display().to_string();
        ["finetune", model.to_str().unwrap(), "--data", &spec, "--output", &p("out.onnx"), "--steps", "8"]
            .into_iter()
            .map(String::from)
            .chain(
                ["--batch", "8", "--threads", "2", "--seed", "3", "--checkpoint", &p("ck"), "--checkpoint-every", "1"]
                    .map(String::from),
            )
            .chain(["--augment", "flip", "--quiet"].map(String::from))
            .collect()
    };
    let run = |a: &[String]| edgetune(&a.iter().map(String::as_str).collect::<Vec<_>>());

    // The uninterrupted run, and how long it takes.
    let reference = d.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    let t = Instant::now();
    let (code, _, err) = run(&args(&reference));
    assert_eq!(code, 0, "{err}");
    let span = t.elapsed();
    let want = std::fs::read(reference.join("out.onnx")).unwrap();

    let (mut outputs_seen, mut resumed) = (0, 0);
    for k in 0..20u32 {
        let dir = d.path().join(format!("kill{k}"));
        std::fs::create_dir(&dir).unwrap();
        let mut child =
            Command::new(env!("CARGO_BIN_EXE_edgetune")).args(args(&dir)).stdout(Stdio::null()).spawn().unwrap();
        // Kill moments drawn at random (a fixed seed, so that a failure reproduces) over
        // 5%..115% of the uninterrupted run's duration.
        std::thread::sleep(span.mul_f64(0.05 + 1.1 * draw(k)));
        child.kill().ok();
        child.wait().unwrap();

        let out = dir.join("out.onnx");
        if out.exists() {
            assert_eq!(std::fs::read(&out).unwrap(), want, "kill {k}: a partial or different output");
            outputs_seen += 1;
        }
        if dir.join("ck/checkpoint.npz").exists() {
            let mut a = args(&dir);
            a.push("--resume".into());
            let (code, _, err) = run(&a);
            assert_eq!(code, 0, "kill {k}: the checkpoint does not resume: {err}");
            assert_eq!(std::fs::read(&out).unwrap(), want, "kill {k}: the resumed run differs");
            resumed += 1;
        }
        assert_eq!(std::fs::read(&model).unwrap(), model_bytes, "kill {k}: the input model changed");
    }
    println!("20 kills over {span:?}: {resumed} resumed from a checkpoint, {outputs_seen} had finished");
    assert!(resumed >= 5, "too few kills landed mid-run to test resuming ({resumed})");
}

#[test]
fn two_runs_writing_one_output_leave_one_complete_file() {
    let d = tempfile::tempdir().unwrap();
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/pretrained/resnet20_fashion.onnx");
    let n = 16;
    let x = edgetune::Tensor::from_vec([n, 3, 32, 32], edgetune::tensor::lcg_values(n * 3 * 32 * 32, 9));
    let data = d.path().join("d.npz");
    write_xy_npz(&data, &x, &(0..n as i64).map(|i| i % 10).collect::<Vec<_>>());
    let spec = format!("npz:{}", data.display());
    let args = |seed: &'static str, out: &Path| -> Vec<String> {
        ["finetune", model, "--data", &spec, "--output", out.to_str().unwrap(), "--steps", "4", "--batch", "4"]
            .into_iter()
            .chain(["--seed", seed, "--threads", "1", "--quiet"])
            .map(String::from)
            .collect()
    };
    // Each seed alone, for the two possible results.
    let alone: Vec<Vec<u8>> = ["1", "2"]
        .iter()
        .map(|seed| {
            let out = d.path().join(format!("alone{seed}.onnx"));
            let a = args(seed, &out);
            let (code, _, err) = edgetune(&a.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(code, 0, "{err}");
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert_ne!(alone[0], alone[1], "the two seeds must give different models");
    let shared = d.path().join("shared.onnx");
    for round in 0..3 {
        let children: Vec<_> = ["1", "2"]
            .iter()
            .map(|seed| {
                Command::new(env!("CARGO_BIN_EXE_edgetune"))
                    .args(args(seed, &shared))
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "round {round}");
        }
        let got = std::fs::read(&shared).unwrap();
        assert!(got == alone[0] || got == alone[1], "round {round}: a mix of the two runs");
    }
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 4, "no temporary files left: {left:?}"); // d.npz, alone1, alone2, shared
}
