//! `edgetune grad` end to end: the .npz holds `loss` and one array per trainable initializer
//! keyed by its ONNX name, equal to what the library computes; bad labels, label counts,
//! non-finite losses and models without a float output are one-line errors.

mod common;

use std::path::{Path, PathBuf};

use common::build::*;
use common::*;
use edgetune::data::npy::write_tensor;
use edgetune::Tensor;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;

fn write_labels(path: &Path, labels: &[i64]) {
    let a = ArrayD::from_shape_vec(IxDyn(&[labels.len()]), labels.to_vec()).unwrap();
    a.write_npy(std::fs::File::create(path).unwrap()).unwrap();
}

/// A small classifier: x [N,3,8,8] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> 5 classes.
fn classifier(dir: &Path) -> PathBuf {
    let mut m = conv_relu();
    let g = m.graph.as_mut().unwrap();
    g.output.clear();
    g.node.push(node("GlobalAveragePool", "gap", &["y"], &["p"]));
    g.node.push(node("Flatten", "flat", &["p"], &["f"]));
    g.node.push(node("Gemm", "fc", &["f", "fc.w", "fc.b"], &["logits"]));
    g.node.last_mut().unwrap().attribute.push(common::attr::int("transB", 1));
    let w: Vec<f32> = (0..20).map(|i| (i as f32 * 0.37).sin()).collect();
    g.initializer.push(floats("fc.w", &[5, 4], &w));
    g.initializer.push(floats("fc.b", &[5], &[0.1, -0.1, 0.0, 0.2, -0.2]));
    g.output.push(value("logits", &[-1, 5]));
    let p = dir.join("clf.onnx");
    save(&m, &p);
    p
}

fn x_input(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("x.npy");
    let data = (0..n * 192).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    write_tensor(&p, &Tensor::from_vec([n, 3, 8, 8], data)).unwrap();
    p
}

#[test]
fn grad_writes_loss_and_named_gradients() {
    let d = tempfile::tempdir().unwrap();
    let (m, x, l, out) = (classifier(d.path()), x_input(d.path(), 3), d.path().join("l.npy"), d.path().join("g.npz"));
    write_labels(&l, &[0, 4, 2]);
    let (code, stdout, err) = edgetune(&[
        "grad",
        m.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--labels",
        l.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("loss"));
    let mut npz = read_npz(&out);
    let mut names = npz.names().unwrap();
    names.sort();
    assert_eq!(names, vec!["fc.b", "fc.w", "loss", "w"]);
    let loss: ArrayD<f32> = npz.by_name("loss").unwrap();
    assert_eq!(loss.ndim(), 0, "loss is a 0-d array");
    let gw = npz_tensor(&mut npz, "w");
    assert_eq!(gw.shape(), &[4, 3, 3, 3]);
    // The bias gradient of a mean cross-entropy sums (softmax − onehot)/N over the batch: its
    // entries add up to 0 (each row of softmax − onehot sums to 0).
    let gb = npz_tensor(&mut npz, "fc.b");
    assert!(gb.data().iter().sum::<f32>().abs() < 1e-6);
    assert!(loss.iter().next().unwrap().is_finite());

    // --train head: only the classifier.
    let out2 = d.path().join("head.npz");
    let (code, _, err) = edgetune(&[
        "grad",
        m.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--labels",
        l.to_str().unwrap(),
        "--train",
        "head",
        "--output",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let mut names = read_npz(&out2).names().unwrap();
    names.sort();
    assert_eq!(names, vec!["fc.b", "fc.w", "loss"]);
    let head_b = npz_tensor(&mut read_npz(&out2), "fc.b");
    assert_eq!(head_b.data(), gb.data(), "freezing the body does not change the head's gradient");
}

#[test]
fn bad_labels_and_models_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let (m, x, l, out) = (classifier(d.path()), x_input(d.path(), 3), d.path().join("l.npy"), d.path().join("g.npz"));
    let args = |l: &Path| {
        vec![
            "grad".to_string(),
            m.display().to_string(),
            "--input".into(),
            x.display().to_string(),
            "--labels".into(),
            l.display().to_string(),
            "--output".into(),
            out.display().to_string(),
        ]
    };
    let run = |a: Vec<String>, needle: &str| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        assert_bad_input(&a, needle);
        assert!(!out.exists(), "nothing written on error");
    };
    write_labels(&l, &[0, 5, 1]);
    run(args(&l), "label 5");
    write_labels(&l, &[0, -1, 1]);
    run(args(&l), "label -1");
    write_labels(&l, &[0, 1]);
    run(args(&l), "2 labels for a batch of 3");

    // A non-finite input makes a non-finite loss: exit 1 (a runtime failure), one line.
    write_labels(&l, &[0, 1, 2]);
    let xn = d.path().join("nan.npy");
    write_tensor(&xn, &Tensor::from_vec([3, 3, 8, 8], vec![f32::NAN; 576])).unwrap();
    let (code, _, err) = edgetune(&[
        "grad",
        m.to_str().unwrap(),
        "--input",
        xn.to_str().unwrap(),
        "--labels",
        l.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: non-finite") && err.trim_end().lines().count() == 1, "{err}");

    // A model whose first output is an integer tensor.
    let mut bad = conv_relu();
    let g = bad.graph.as_mut().unwrap();
    g.node.push(node("Shape", "shape", &["y"], &["s"]));
    g.output.clear();
    g.output.push(value("s", &[4]));
    if let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) = g.output[0].r#type.as_mut().unwrap().value.as_mut()
    {
        t.elem_type = 7;
    }
    let p = d.path().join("int_out.onnx");
    save(&bad, &p);
    let mut a = args(&l);
    a[1] = p.display().to_string();
    run(a, "not a float tensor");
}
