//! Export round trip: a model finetuned by edgetune and written back as ONNX gives the same
//! outputs in edgetune, in tract (run here) and in onnxruntime (tools/ort_run.py in the tools
//! venv made by tools/fixtures.sh), keeps the input's node list, and leaves the input file
//! byte-for-byte unchanged. Tolerance: 1e-4 of the output scale, as for the imported models.

mod common;

use std::path::Path;

use common::*;
use edgetune::data::npy::{read_tensor, write_tensor};
use edgetune::Tensor;

fn digest(path: &Path) -> u64 {
    // FNV-1a over the bytes: enough to see any change to the input file.
    std::fs::read(path).unwrap().iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn run_ort(model: &Path, x: &Path, y: &Path) -> Tensor {
    let py = root().join("tools/.venv-light/bin/python");
    let out = std::process::Command::new(py).arg(root().join("tools/ort_run.py")).args([model, x, y]).output().unwrap();
    assert!(out.status.success(), "onnxruntime: {}", String::from_utf8_lossy(&out.stderr));
    read_tensor(y).unwrap()
}

/// The exported model on `x` in edgetune, onnxruntime and tract: within 1e-4 of the output scale.
fn assert_peers_agree(dir: &Path, model: &Path, x: &Tensor, what: &str) -> Tensor {
    let (xp, yp) = (dir.join("x.npy"), dir.join("y_ort.npy"));
    write_tensor(&xp, x).unwrap();
    let graph = edgetune::onnx::load(model).unwrap().graph;
    let ours = edgetune::Session::new(graph, 0).unwrap().run(vec![x.clone()]).unwrap().remove(0);
    let (e_ort, e_tract) = (rel_err(&ours, &run_ort(model, &xp, &yp)), rel_err(&ours, &run_tract(model, x)));
    println!("{what}: vs onnxruntime {e_ort:.2e}, vs tract {e_tract:.2e}");
    assert!(e_ort <= 1e-4 && e_tract <= 1e-4, "{what}: onnxruntime {e_ort}, tract {e_tract}");
    ours
}

#[test]
fn finetuned_resnet18_runs_the_same_in_edgetune_tract_and_onnxruntime() {
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet18_bn_op17.onnx");
    let before = digest(&model);
    // A small batch at 64x64 (the model declares 224x224; it is convolutional up to its pooling).
    let x = Tensor::from_vec([4, 3, 64, 64], edgetune::tensor::lcg_values(4 * 3 * 64 * 64, 3));
    let (out, _) = finetune_npz(
        d.path(),
        &model,
        &x,
        &[1, 7, 42, 999],
        &["--steps", "2", "--batch", "4", "--optimizer", "sgd", "--lr", "0.05"],
    );
    assert_eq!(digest(&model), before, "the input model is unchanged");

    let (orig, tuned) = (edgetune::onnx::load(&model).unwrap(), edgetune::onnx::load(&out).unwrap());
    let names = |m: &edgetune::onnx::Model| {
        m.proto.graph.as_ref().unwrap().node.iter().map(|n| n.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&tuned), names(&orig), "same node list");
    let changed =
        orig.graph.initializers.iter().zip(&tuned.graph.initializers).filter(|(a, b)| match (&a.data, &b.data) {
            (edgetune::graph::Const::F32(p), edgetune::graph::Const::F32(q)) => p.data() != q.data(),
            _ => false,
        });
    assert!(changed.count() > 60, "weights and running statistics were updated");

    assert_peers_agree(d.path(), &out, &x, "finetuned ResNet-18");
}

#[test]
fn a_replaced_head_exports_with_its_new_shapes() {
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet18_bn_op17.onnx");
    let x = Tensor::from_vec([4, 3, 64, 64], edgetune::tensor::lcg_values(4 * 3 * 64 * 64, 5));
    let options = ["--steps", "1", "--batch", "4", "--num-classes", "4", "--train", "head"];
    let (out, stdout) = finetune_npz(d.path(), &model, &x, &[0, 1, 2, 3], &options);
    assert!(stdout.contains("1000 -> 4 classes"), "{stdout}");
    let tuned = edgetune::onnx::load(&out).unwrap();
    let fc = tuned.graph.initializers.iter().find(|i| i.name == "fc.weight").unwrap();
    assert_eq!(fc.data.shape(), &[4, 512]);
    let ours = assert_peers_agree(d.path(), &out, &x, "4-class head");
    assert_eq!(ours.shape(), &[4, 4]);

    // Labels beyond the model's classes are refused before training, naming the data.
    let data = d.path().join("train.npz");
    write_xy_npz(&data, &x, &[0, 1, 2, 1000]);
    let bad = d.path().join("bad.onnx");
    let spec = format!("npz:{}", data.display());
    let args =
        ["finetune", model.to_str().unwrap(), "--data", &spec, "--output", bad.to_str().unwrap(), "--steps", "1"];
    assert_bad_input(&args, "label 1000");
    assert!(!bad.exists());
}

#[test]
fn external_data_models_export_their_data_beside_the_output() {
    // The dynamo export: BatchNorm folded into the convolutions, tensors in an external file.
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet18_dynamo_op18.onnx");
    let data_file = fixtures().join("models/resnet18_dynamo_op18.onnx.data");
    let (before, before_data) = (digest(&model), digest(&data_file));
    let x = Tensor::from_vec([2, 3, 64, 64], edgetune::tensor::lcg_values(2 * 3 * 64 * 64, 9));
    let options = ["--steps", "1", "--batch", "2", "--optimizer", "sgd", "--lr", "0.01"];
    let (out, _) = finetune_npz(d.path(), &model, &x, &[3, 5], &options);
    assert_eq!((digest(&model), digest(&data_file)), (before, before_data), "the input and its data are unchanged");
    assert!(d.path().join("tuned.onnx.data").exists(), "external data written beside the output");
    assert!(std::fs::metadata(&out).unwrap().len() < 1 << 20, "the .onnx itself holds no weights");
    assert_peers_agree(d.path(), &out, &x, "external-data export");
}

#[test]
fn the_imagenet_resnet50_finetunes_and_round_trips() {
    // NHWC input behind a Transpose, trailing Softmax, SAME_UPPER padding; the head retrained.
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet50_imagenet.onnx");
    let before = digest(&model);
    let pixels = edgetune::tensor::lcg_values(2 * 3 * 64 * 64, 13).iter().map(|v| v * 100.0).collect();
    let x = Tensor::from_vec([2, 3, 64, 64], pixels);
    let options = ["--steps", "1", "--batch", "2", "--train", "head", "--bn", "frozen", "--size", "64x64"];
    let (out, _) = finetune_npz(d.path(), &model, &x, &[281, 967], &options);
    assert_eq!(digest(&model), before, "the input model is unchanged");
    let tuned = edgetune::onnx::load(&out).unwrap();
    let orig = edgetune::onnx::load(&model).unwrap();
    let differs = |name: &str| {
        let pick =
            |m: &edgetune::onnx::Model| m.graph.initializers.iter().find(|i| i.name == name).unwrap().data.to_floats();
        pick(&tuned) != pick(&orig)
    };
    assert!(differs("fc1000/kernel") && !differs("conv1/kernel"), "only the head trained");
    // The model takes NHWC: the same images, transposed.
    let nhwc =
        Tensor::from_vec([2, 64, 64, 3], edgetune::kernels::layout::transpose(x.data(), x.shape(), &[0, 2, 3, 1]));
    assert_peers_agree(d.path(), &out, &nhwc, "ImageNet ResNet-50 export");
}
