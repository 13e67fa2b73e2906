//! The CLI end to end on real models: the ImageNet ResNet-50 from npm names the photos, `infer`
//! writes what the library computes, `inspect` and `bench infer` give the contract's keys.

mod common;

use common::*;

fn top1(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("1. "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn resnet50_from_npm_names_the_scikit_image_photos() {
    let dir = fixtures();
    let model = dir.join("models/resnet50_imagenet.onnx");
    let labels = dir.join("models/imagenet_labels.txt");
    let (code, out, err) = edgetune(&[
        "infer",
        model.to_str().unwrap(),
        "--image",
        dir.join("images/chelsea.png").to_str().unwrap(),
        dir.join("images/coffee.png").to_str().unwrap(),
        "--preprocess",
        "caffe",
        "--labels",
        labels.to_str().unwrap(),
        "--top",
        "5",
    ]);
    assert_eq!(code, 0, "{err}");
    // Expected classes: what the photos show (scikit-image's docs: a cat named Chelsea, a cup
    // of coffee); onnxruntime on the same converted model agrees (tools/fetch_resnet50.py).
    assert_eq!(top1(&out), vec!["Egyptian_cat", "espresso"], "{out}");
    assert_eq!(out.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 10, "top 5 each: {out}");
}

#[test]
fn infer_writes_the_output_the_reference_expects() {
    let dir = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let mut npz = read_npz(&dir.join("refs/resnet20_cifar.npz"));
    let (x, want) = (npz_tensor(&mut npz, "x0"), npz_tensor(&mut npz, "y0"));
    let (xp, yp) = (tmp.path().join("x.npy"), tmp.path().join("y.npy"));
    edgetune::data::npy::write_tensor(&xp, &x).unwrap();
    let model = dir.join("models/resnet20_cifar.onnx");
    let (code, _, err) = edgetune(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        xp.to_str().unwrap(),
        "--output",
        yp.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let got = edgetune::data::npy::read_tensor(&yp).unwrap();
    // Same tolerance as tests/reference_outputs.rs (onnxruntime 1.32.0 reference).
    assert!(rel_err(&got, &want) <= 1e-4);
}

#[test]
fn inspect_json_describes_the_model() {
    let model = fixtures().join("models/resnet18_bn_op17.onnx");
    let (code, out, err) = edgetune(&["inspect", model.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["opset"], 17);
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["N", 3, 224, 224]));
    // torchvision resnet18: 11,689,512 trainable parameters (its documented count) plus the
    // BatchNorm running statistics (2 x 4,800 values over 20 BatchNorm layers).
    assert_eq!(v["parameters"], 11_689_512 + 9_600);
    assert_eq!(v["op_counts"]["Conv"], 20);
    assert_eq!(v["op_counts"]["BatchNormalization"], 20);
    assert_eq!(v["running_stats"].as_array().unwrap().len(), 40);
    assert_eq!(v["forward_supported"], true);
    // Every op of a torchvision ResNet has a backward rule.
    assert_eq!(v["backward_supported"], true, "{}", v["ops_without_backward"]);
}

#[test]
fn bench_infer_reports_the_contract_keys() {
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let (code, out, err) =
        edgetune(&["bench", "infer", model.to_str().unwrap(), "--batch", "4", "--iters", "3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    // img_per_s is derived from the median: batch / median seconds.
    let ips = v["img_per_s"].as_f64().unwrap();
    assert!((ips - 4.0 / (v["median_ms"].as_f64().unwrap() / 1e3)).abs() < 1e-6 * ips);
    assert_eq!(v["size"], serde_json::json!([32, 32]));
}
