//! `edgetune finetune` options: values checked when the command line is read, BatchNorm
//! statistics kept in a frozen backbone, the --log rows, and what the run says about a batch
//! larger than the data.

mod common;

use std::path::Path;

use common::*;

/// `npz:` data of `n` random 32x32 RGB images with labels 0..9, in `dir`.
fn data(dir: &Path, n: usize) -> String {
    let x = edgetune::Tensor::from_vec([n, 3, 32, 32], edgetune::tensor::lcg_values(n * 3 * 32 * 32, 21));
    let y: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    let p = dir.join("train.npz");
    write_xy_npz(&p, &x, &y);
    format!("npz:{}", p.display())
}

fn model() -> String {
    fixtures().join("models/resnet20_cifar.onnx").display().to_string()
}

#[test]
fn option_values_are_checked_when_the_command_line_is_read() {
    let d = tempfile::tempdir().unwrap();
    let (m, spec) = (model(), data(d.path(), 4));
    let out = d.path().join("out.onnx");
    let cases: [(&[&str], &str); 12] = [
        (&["--lr", "nan"], "nan is not a finite number"),
        // A negative number is read as the value it is, then refused (not "unexpected argument").
        (&["--lr", "-1"], "-1 must be greater than 0"),
        (&["--znorm-eps", "-1e-5"], "-1e-5 must be greater than 0"),
        // A flag where a value belongs is refused as that value, naming both.
        (&["--lr", "--steps"], "invalid value '--steps' for '--lr <LR>'"),
        (&["--lr", "inf"], "inf is not a finite number"),
        (&["--momentum", "1.5"], "1.5 must be below 1"),
        (&["--weight-decay", "-0.1"], "-0.1 must not be negative"),
        (&["--znorm-eps", "0"], "0 must be greater than 0"),
        (&["--batch", "0"], "--batch"),
        (&["--steps", "0"], "--steps"),
        (&["--epochs", "0"], "--epochs"),
        // The regex crate's multi-line report comes out as one line.
        (&["--train", "("], "is not a valid regex (unclosed group)"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["finetune", &m, "--data", &spec, "--output", out.to_str().unwrap(), "--steps", "1"];
        args.extend_from_slice(extra);
        assert_bad_input(&args, needle);
        assert!(!out.exists(), "{extra:?}: nothing written");
    }
}

/// The running statistics of every BatchNorm of the model at `path`, by initializer name.
fn running_stats(path: &Path) -> Vec<(String, Vec<f32>)> {
    let m = edgetune::onnx::load(path).unwrap();
    let stats = edgetune::autodiff::running_stat_values(&m.graph);
    m.graph
        .initializers
        .iter()
        .filter(|i| stats.contains(&i.value))
        .map(|i| (i.name.clone(), i.data.to_floats()))
        .collect()
}

#[test]
fn a_frozen_backbone_keeps_its_batchnorm_statistics() {
    // --train head: no BatchNorm scale or bias trains, so by default every layer runs on (and
    // keeps) its running statistics, as Keras' trainable=False; --bn train still updates them.
    let d = tempfile::tempdir().unwrap();
    let (m, spec) = (model(), data(d.path(), 8));
    let before = running_stats(Path::new(&m));
    assert_eq!(before.len(), 42, "ResNet-20: 21 BatchNorms, a mean and a variance each");
    let run = |name: &str, extra: &[&str]| {
        let out = d.path().join(name);
        let mut args = vec!["finetune", &m, "--data", &spec, "--output", out.to_str().unwrap(), "--steps", "2"];
        args.extend_from_slice(&["--batch", "8", "--train", "head", "--quiet"]);
        args.extend_from_slice(extra);
        let (code, _, err) = edgetune(&args);
        assert_eq!(code, 0, "{err}");
        running_stats(&out)
    };
    assert_eq!(run("auto.onnx", &[]), before, "default: a frozen backbone keeps its statistics");
    let trained = run("train.onnx", &["--bn", "train"]);
    let changed = trained.iter().zip(&before).filter(|(a, b)| a.1 != b.1).count();
    assert_eq!(changed, 42, "--bn train updates every running statistic");
}

#[test]
fn log_rows_carry_the_time_the_validation_loss_and_the_lr_as_given() {
    let d = tempfile::tempdir().unwrap();
    let (m, spec) = (model(), data(d.path(), 8));
    let (out, log) = (d.path().join("out.onnx"), d.path().join("log.jsonl"));
    let args = [
        "finetune",
        &m,
        "--data",
        &spec,
        "--val",
        &spec,
        "--output",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--batch",
        "4",
        "--lr",
        "1e-4",
        "--log",
        log.to_str().unwrap(),
        "--quiet",
    ];
    let (code, _, err) = edgetune(&args);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Validation before training, 2 steps, validation after the epoch (2 steps of 4 = 8).
    assert_eq!(rows.len(), 4, "{text}");
    for r in &rows {
        let time = r["time"].as_str().unwrap_or_default();
        assert!(time.len() == 24 && time.starts_with("20") && time.ends_with('Z'), "UTC time: {r}");
        assert!(r["elapsed_s"].as_f64().is_some_and(|s| s >= 0.0), "{r}");
    }
    for step in &rows[1..3] {
        // The f32 1e-4, written as the f32 it is (not 0.00009999999747378752).
        assert!(text.contains("\"lr\":0.0001,"), "{text}");
        assert_eq!(step["lr"].as_f64(), Some(0.0001));
        assert!(step["loss"].as_f64().is_some_and(f64::is_finite), "{step}");
    }
    for v in [&rows[0], &rows[3]] {
        assert!(v["val_loss"].as_f64().is_some_and(|l| l > 0.0) && v["val_accuracy"].is_number(), "{v}");
    }
}

#[test]
fn a_batch_larger_than_the_data_is_said() {
    let d = tempfile::tempdir().unwrap();
    let (m, spec) = (model(), data(d.path(), 6));
    let out = d.path().join("out.onnx");
    let args = ["finetune", &m, "--data", &spec, "--output", out.to_str().unwrap(), "--steps", "1", "--batch", "100"];
    let (code, _, err) = edgetune(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--batch 100 is larger than the 6 training samples"), "{err}");
}
