//! idx data (MNIST / Fashion-MNIST format) end to end: gzipped and plain files load, bad headers
//! and short files are one-line errors, and `finetune --data idx:DIR --val idx:DIR` trains a
//! 3-channel 32x32 model on 1-channel 28x28 images (resized, gray replicated) and reports
//! validation accuracy.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use edgetune::data::idx::encode;

/// `n` 28x28 images whose class (0..4) is written into their brightness pattern.
fn write_split(dir: &Path, split: &str, n: usize, gz: bool) {
    let labels: Vec<u8> = (0..n).map(|i| (i % 4) as u8).collect();
    let pixels: Vec<u8> =
        (0..n * 784).map(|i| if (i % 784) / 196 == labels[i / 784] as usize { 220 } else { 20 }).collect();
    for (name, bytes) in [
        (format!("{split}-images-idx3-ubyte"), encode(&[n, 28, 28], &pixels)),
        (format!("{split}-labels-idx1-ubyte"), encode(&[n], &labels)),
    ] {
        if gz {
            let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn idx_loads_gzipped_or_plain_and_rejects_bad_files() {
    let d = tempfile::tempdir().unwrap();
    write_split(d.path(), "train", 12, true);
    write_split(d.path(), "t10k", 8, false);
    let spec = format!("idx:{}", d.path().display());
    let train = edgetune::data::dataset::load(&spec, false).unwrap();
    let test = edgetune::data::dataset::load(&spec, true).unwrap();
    assert_eq!((train.len(), test.len()), (12, 8));
    assert_eq!(&train.y[..5], &[0, 1, 2, 3, 0]);

    // A truncated image file: the header promises 8 images.
    let bytes = std::fs::read(d.path().join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::write(d.path().join("t10k-images-idx3-ubyte"), &bytes[..bytes.len() - 100]).unwrap();
    let err = edgetune::data::dataset::load(&spec, true).err().unwrap().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte") && err.contains("need"), "{err}");
    // Not an idx file at all.
    std::fs::write(d.path().join("t10k-images-idx3-ubyte"), b"hello").unwrap();
    assert!(edgetune::data::dataset::load(&spec, true).is_err());
    // An empty folder: the error names what is missing, and nothing is written.
    let empty = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let out = empty.path().join("o.onnx");
    let data = format!("idx:{}", empty.path().display());
    assert_bad_input(
        &["finetune", model.to_str().unwrap(), "--data", &data, "--output", out.to_str().unwrap()],
        "train-images",
    );
    assert!(!out.exists());
}

#[test]
fn finetune_on_idx_reports_validation_accuracy() {
    let d = tempfile::tempdir().unwrap();
    write_split(d.path(), "train", 64, true);
    write_split(d.path(), "t10k", 32, true);
    let spec = format!("idx:{}", d.path().display());
    let out = d.path().join("tuned.onnx");
    let log = d.path().join("log.jsonl");
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let (code, stdout, err) = edgetune(&[
        "finetune",
        model.to_str().unwrap(),
        "--data",
        &spec,
        "--val",
        &spec,
        "--output",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch",
        "16",
        "--lr",
        "2e-3",
        "--val-every",
        "3",
        "--log",
        log.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("validation accuracy before"), "{stdout}");
    // 64 images in batches of 16: 4 steps per epoch, 8 in all. Validation before training,
    // every 3 steps and at each epoch's end.
    assert_eq!(stdout.matches("validation accuracy").count(), 5, "{stdout}");
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let val: Vec<&serde_json::Value> = rows.iter().filter(|r| r.get("val_accuracy").is_some()).collect();
    let steps: Vec<u64> = val.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 3, 4, 6, 8]);
    for r in &val {
        let shown = format!("validation accuracy {:.4}", r["val_accuracy"].as_f64().unwrap());
        assert!(stdout.contains(&shown) || stdout.contains(&shown.replace("accuracy", "accuracy before:")), "{r}");
    }
    assert_eq!(rows.len() - val.len(), 8, "one row per step besides");
    // The written model loads and keeps the input's graph.
    let tuned = edgetune::onnx::load(&out).unwrap();
    let orig = edgetune::onnx::load(&model).unwrap();
    let ops = |m: &edgetune::onnx::Model| m.graph.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    assert_eq!(ops(&tuned), ops(&orig));
}
