//! Finetune-to-deploy: a model finetuned by edgetune is whole and loads where users deploy it.
//! Every check loads the written file the way a user does: `onnx.checker.check_model(path,
//! full_check=True)` and an onnxruntime session **from its path**, declared shapes as written
//! (tools/deploy_check.py; tools/ort_run.py by contrast relaxes the input dims in memory).
//! Outputs agree with edgetune's within 1e-4 of the output scale (the inference contract).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use edgetune::data::npy::{read_tensor, write_tensor};
use edgetune::Tensor;

/// tools/deploy_check.py on `model` with input `x`: onnxruntime's first output, or the one-line
/// reason the checker or onnxruntime gave.
fn deploy_check(model: &Path, x: &Tensor) -> Result<Tensor, String> {
    let dir = tempfile::tempdir().unwrap();
    let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    write_tensor(&xp, x).unwrap();
    let py = root().join("tools/.venv-light/bin/python");
    let out = std::process::Command::new(py)
        .arg(root().join("tools/deploy_check.py"))
        .args([model, &xp, &yp])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(read_tensor(&yp).unwrap())
}

/// edgetune's output for `x` on the model at `path`.
fn ours(path: &Path, x: &Tensor) -> Tensor {
    let graph = edgetune::onnx::load(path).unwrap().graph;
    edgetune::Session::new(graph, 0).unwrap().run(vec![x.clone()]).unwrap().remove(0)
}

/// Asserts the deployed model runs in onnxruntime from its path and agrees with edgetune on `x`.
fn assert_deploys(path: &Path, x: &Tensor, what: &str) {
    let ort = deploy_check(path, x).unwrap_or_else(|e| panic!("{what}: {e}"));
    let err = rel_err(&ours(path, x), &ort);
    println!("{what}: onnxruntime from its path agrees to {err:.1e}");
    assert!(err <= 1e-4, "{what}: onnxruntime differs by {err}");
}

fn images(n: usize, size: usize, seed: u32) -> Tensor {
    Tensor::from_vec([n, 3, size, size], edgetune::tensor::lcg_values(n * 3 * size * size, seed))
}

fn count_op(m: &edgetune::onnx::Model, op: &str) -> usize {
    m.proto.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == op).count()
}

#[test]
fn constant_nodes_and_their_tensors_are_written_back() {
    // Both exporters write Constant nodes: TorchScript's ZeroPad2d sub-graph (tiny_op17_torch)
    // and MobileNetV2's ReLU6 bounds (Clip with Constant min/max).
    for (name, size) in [("tiny_op17_torch", 16), ("mobilenet_v2_legacy", 64)] {
        let d = tempfile::tempdir().unwrap();
        let model = fixtures().join(format!("models/{name}.onnx"));
        let (out, _) =
            finetune_npz(d.path(), &model, &images(4, size, 1), &[0, 1, 2, 3], &["--steps", "1", "--batch", "4"]);
        let (orig, tuned) = (edgetune::onnx::load(&model).unwrap(), edgetune::onnx::load(&out).unwrap());
        assert!(count_op(&orig, "Constant") > 0, "{name} has Constant nodes");
        assert_eq!(count_op(&tuned, "Constant"), count_op(&orig, "Constant"), "{name}: Constant nodes kept");
        assert_deploys(&out, &images(2, size, 2), name);
    }
}

#[test]
fn external_data_stays_external_and_small_tensors_stay_inline() {
    // The dynamo export keeps its int64 shape constants (ReduceMean's axes, the Reshape target)
    // and small biases inline; onnxruntime's shape inference reads the constants from the file
    // and cannot read them from external data.
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet18_dynamo_op18.onnx");
    let (out, _) = finetune_npz(d.path(), &model, &images(2, 64, 3), &[3, 5], &["--steps", "1", "--batch", "2"]);
    let external = |m: &edgetune::onnx::Model| -> Vec<(String, bool)> {
        let g = m.proto.graph.as_ref().unwrap();
        g.initializer.iter().map(|t| (t.name.clone(), t.data_location == Some(1))).collect()
    };
    let (orig, tuned) = (edgetune::onnx::load(&model).unwrap(), edgetune::onnx::load(&out).unwrap());
    assert!(external(&orig).iter().any(|(_, e)| !e), "the input keeps some tensors inline");
    assert_eq!(external(&tuned), external(&orig), "every initializer where the input kept it");
    assert_deploys(&out, &images(2, 64, 4), "dynamo ResNet-18 with external data");
}

#[test]
fn a_new_head_and_the_training_size_are_declared() {
    // --num-classes 3 on 64x64 data: the input declares 64x64 and the output 3 classes, and every
    // value_info entry agrees, so the full checker passes and onnxruntime runs 64x64 inputs
    // without any relaxing of the declared dims.
    for name in ["resnet18_bn_op17", "resnet18_dynamo_op18"] {
        let d = tempfile::tempdir().unwrap();
        let model = fixtures().join(format!("models/{name}.onnx"));
        let options = ["--steps", "1", "--batch", "4", "--num-classes", "3"];
        let (out, _) = finetune_npz(d.path(), &model, &images(4, 64, 5), &[0, 1, 2, 0], &options);
        let tuned = edgetune::onnx::load(&out).unwrap();
        let dims = |d: &edgetune::graph::ValueDecl| {
            d.dims.as_ref().unwrap().iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
        };
        assert_eq!(dims(&tuned.graph.inputs[0].1), "N,3,64,64");
        assert_eq!(dims(&tuned.graph.outputs[0].1), "N,3");
        assert_eq!(tuned.metadata("input_size"), Some("64x64"));
        assert_deploys(&out, &images(2, 64, 6), name);
    }
}

#[test]
fn a_batch_baked_in_by_the_exporter_trains_at_any_batch() {
    // PyTorch's default exporter declares [1, 3, 224, 224] and reshapes to [1, 512] before the
    // classifier; edgetune trains it at batch 8, and the written model still runs at its
    // declared batch 1 in onnxruntime.
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet18_dynamo_b1.onnx");
    let options = ["--steps", "1", "--batch", "8"];
    let (out, _) = finetune_npz(d.path(), &model, &images(8, 64, 7), &[0, 1, 2, 3, 4, 5, 6, 7], &options);
    assert_eq!(ours(&out, &images(8, 64, 8)).shape(), &[8, 1000]);
    assert_deploys(&out, &images(1, 64, 9), "dynamo ResNet-18 exported at batch 1");
}

#[test]
fn infer_follows_the_preprocessing_the_model_records() {
    // The ImageNet ResNet-50 records `preprocess: caffe`; its top class for the cat photo is
    // Egyptian_cat with that preprocessing (README), and a wrong one without (imagenet
    // preprocessing ranks "dishwasher" first at 0.035, measured 2026-12-02). Flags still win.
    let f = fixtures();
    let (model, photo, labels) =
        (f.join("models/resnet50_imagenet.onnx"), f.join("images/chelsea.png"), f.join("models/imagenet_labels.txt"));
    let args = ["infer", model.to_str().unwrap(), "--image", photo.to_str().unwrap(), "--labels"];
    let run = |extra: &[&str]| {
        let mut a = args.to_vec();
        a.push(labels.to_str().unwrap());
        a.extend_from_slice(&["--top", "1"]);
        a.extend_from_slice(extra);
        let (code, out, err) = edgetune(&a);
        assert_eq!(code, 0, "{err}");
        out
    };
    assert!(run(&[]).contains("1. Egyptian_cat"), "{}", run(&[]));
    assert!(!run(&["--preprocess", "imagenet"]).contains("Egyptian_cat"), "an explicit --preprocess wins");
}

#[test]
fn the_input_model_is_replaced_only_with_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m.onnx");
    std::fs::copy(fixtures().join("models/tiny_op21_resblock.onnx"), &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    let data = d.path().join("d.npz");
    write_xy_npz(&data, &images(2, 16, 10), &[1, 2]);
    let spec = format!("npz:{}", data.display());
    // The same file, spelled another way.
    let same = d.path().join(".").join("m.onnx");
    let args =
        ["finetune", model.to_str().unwrap(), "--data", &spec, "--steps", "1", "--output", same.to_str().unwrap()];
    assert_bad_input(&args, "--overwrite");
    assert_eq!(std::fs::read(&model).unwrap(), before, "the input is untouched");
    let mut with = args.to_vec();
    with.extend_from_slice(&["--overwrite", "--quiet"]);
    let (code, _, err) = edgetune(&with);
    assert_eq!(code, 0, "{err}");
    assert_ne!(std::fs::read(&model).unwrap(), before, "--overwrite replaces it");
}

/// A folder of photos as a user brings one: `classes` sub-folders of PNG and JPEG images of
/// several sizes and aspect ratios (each class its own colour and stripe direction, plus noise,
/// from a seeded generator), and a file that is not an image.
fn photo_folder(root: &Path, classes: &[&str], per_class: usize, seed: u64) -> Vec<PathBuf> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut written = Vec::new();
    for (k, class) in classes.iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let (w, h) = [(80, 60), (48, 72), (64, 64)][i % 3];
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let stripe = if k == 1 { (x / 8) % 2 } else { (y / 8) % 2 } as u8;
                let base = [[200u8, 40, 40], [40, 180, 60], [50, 60, 210]][k % 3];
                image::Rgb(base.map(|c| c.saturating_sub(stripe * 60).saturating_add((next() % 30) as u8)))
            });
            let path = root.join(class).join(format!("img{i}.{}", if i % 2 == 0 { "png" } else { "jpg" }));
            img.save(&path).unwrap();
            written.push(path);
        }
    }
    std::fs::write(root.join(classes[0]).join("notes.txt"), "not an image").unwrap();
    written
}

#[test]
fn a_folder_of_photos_finetunes_and_deploys_to_onnxruntime() {
    // The user's path, end to end: today's exporters (PyTorch's default dynamo exporter at batch
    // 1, and the legacy exporter), a folder of photos in 3 classes with a stray text file and a
    // validation folder holding 2 of them, batch 8 at 64x64 with a new 3-class head. The result
    // passes the full checker, loads in onnxruntime from its path at the size it was trained at,
    // gives edgetune's probabilities there (1e-4), and `infer --top 3` names the class folders.
    let d = tempfile::tempdir().unwrap();
    let classes = ["cat", "dog", "fox"];
    photo_folder(&d.path().join("train"), &classes, 6, 1);
    let val_images = photo_folder(&d.path().join("val"), &["cat", "fox"], 2, 2);
    for name in ["resnet18_dynamo_b1", "mobilenet_v2_legacy"] {
        let model = fixtures().join(format!("models/{name}.onnx"));
        let out = d.path().join(format!("{name}_tuned.onnx"));
        let (train, val) =
            (format!("folder:{}/train", d.path().display()), format!("folder:{}/val", d.path().display()));
        let args = [
            "finetune",
            model.to_str().unwrap(),
            "--data",
            &train,
            "--val",
            &val,
            "--batch",
            "8",
            "--size",
            "64x64",
            "--num-classes",
            "3",
            "--steps",
            "3",
            "--quiet",
            "--output",
            out.to_str().unwrap(),
        ];
        let (code, _, err) = edgetune(&args);
        assert_eq!(code, 0, "{name}: {err}");
        // The training and the validation folder each hold one stray text file.
        assert_eq!(err.matches("skipped 1 file that is not an image (cat/notes.txt)").count(), 2, "{name}: {err}");

        let tuned = edgetune::onnx::load(&out).unwrap();
        let recipe = edgetune::data::recipe::Recipe::of(&tuned);
        assert_eq!(recipe.classes.as_deref(), Some(&classes.map(String::from)[..]), "{name}: class names recorded");
        assert_eq!(recipe.input_size, Some([64, 64]));
        let prep = edgetune::data::image::Prep {
            channels: 3,
            size: [64, 64],
            preprocess: recipe.preprocess.unwrap(),
            layout: edgetune::data::image::Layout::Nchw,
            resize: recipe.resize.unwrap(),
        };
        // One image at a time: the dynamo export keeps its declared batch of 1.
        for img in &val_images {
            let x = edgetune::data::image::load_batch(&[img], &prep).unwrap();
            let ort = deploy_check(&out, &x).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (p_ort, p_ours) = (edgetune::ops::softmax_2d(&ort), edgetune::ops::softmax_2d(&ours(&out, &x)));
            let diff = p_ort.iter().zip(&p_ours).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 1e-4, "{name}: probabilities differ by {diff}");
        }
        let (_, report, _) = edgetune(&["inspect", out.to_str().unwrap()]);
        assert!(report.contains("3 classes (cat, dog, fox)"), "{name}: inspect shows the recorded classes: {report}");
        let img = val_images[0].to_str().unwrap();
        let (code, stdout, err) = edgetune(&["infer", out.to_str().unwrap(), "--image", img, "--top", "3"]);
        assert_eq!(code, 0, "{err}");
        for class in classes {
            assert!(stdout.contains(&format!(". {class}  ")), "{name}: infer names '{class}': {stdout}");
        }
        println!("{name}: deployed; infer says\n{stdout}");
    }
}

/// The model file at `path`, decoded as it is on disk.
fn proto_of(path: &Path) -> tract_onnx::pb::ModelProto {
    use prost::Message;
    tract_onnx::pb::ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap()
}

fn write_proto(m: &tract_onnx::pb::ModelProto, path: &Path) {
    use prost::Message;
    std::fs::write(path, m.encode_to_vec()).unwrap();
}

#[test]
fn declared_shapes_follow_the_model_as_its_exporter_wrote_them() {
    use tract_onnx::pb::type_proto;
    let d = tempfile::tempdir().unwrap();
    let tiny = fixtures().join("models/tiny_op17_torch.onnx");
    // (a) A batch dim declared as unknown (neither a number nor a name) stays unknown: the
    // written model still runs at any batch in onnxruntime.
    let mut m = proto_of(&tiny);
    let g = m.graph.as_mut().unwrap();
    for vi in g.input.iter_mut().chain(g.output.iter_mut()) {
        if let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            t.shape.as_mut().unwrap().dim[0].value = None;
        }
    }
    let unknown = d.path().join("unknown_batch.onnx");
    write_proto(&m, &unknown);
    let (out, _) =
        finetune_npz(d.path(), &unknown, &images(4, 16, 11), &[0, 1, 2, 3], &["--steps", "1", "--batch", "4"]);
    assert_deploys(&out, &images(4, 16, 12), "unknown batch dim, batch 4");

    // (b) An IR 3 model lists its initializers among the graph inputs: those declarations
    // follow a new head too (onnxruntime refuses a declared [10, 8] holding [3, 8]).
    let mut m = proto_of(&tiny);
    m.ir_version = 3;
    let g = m.graph.as_mut().unwrap();
    let listed: Vec<_> =
        g.initializer.iter().filter(|t| t.data_type == 1).map(|t| common::build::value(&t.name, &t.dims)).collect();
    g.input.extend(listed);
    let ir3 = d.path().join("ir3.onnx");
    write_proto(&m, &ir3);
    let sub = d.path().join("ir3");
    std::fs::create_dir(&sub).unwrap();
    let options = ["--steps", "1", "--batch", "4", "--num-classes", "3"];
    let (out, _) = finetune_npz(&sub, &ir3, &images(4, 16, 13), &[0, 1, 2, 0], &options);
    assert_deploys(&out, &images(2, 16, 14), "IR 3 with initializers as inputs, new head");
}

#[test]
fn class_names_that_no_longer_fit_are_dropped() {
    // A model finetuned on a 3-class folder records cat, dog, fox; finetuned again on a folder
    // of 2 classes without a new head, its 3 outputs no longer mean those names (nor the
    // folder's 2): infer numbers the classes instead of printing stale names.
    let d = tempfile::tempdir().unwrap();
    photo_folder(&d.path().join("three"), &["cat", "dog", "fox"], 2, 3);
    let two = photo_folder(&d.path().join("two"), &["ant", "bee"], 2, 4);
    let tiny = fixtures().join("models/tiny_op17_torch.onnx");
    let (m3, m2) = (d.path().join("m3.onnx"), d.path().join("m2.onnx"));
    for (model, data, out, extra) in [(&tiny, "three", &m3, &["--num-classes", "3"][..]), (&m3, "two", &m2, &[][..])] {
        let spec = format!("folder:{}/{data}", d.path().display());
        let mut args = vec!["finetune", model.to_str().unwrap(), "--data", &spec, "--steps", "1", "--batch", "4"];
        args.extend_from_slice(&["--quiet", "--output", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let (code, _, err) = edgetune(&args);
        assert_eq!(code, 0, "{err}");
    }
    assert!(edgetune::onnx::load(&m3).unwrap().metadata("classes").is_some());
    assert_eq!(edgetune::onnx::load(&m2).unwrap().metadata("classes"), None, "stale names dropped");
    let (code, stdout, err) = edgetune(&["infer", m2.to_str().unwrap(), "--image", two[0].to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("class 0") && !stdout.contains("cat"), "{stdout}");
}

#[test]
fn a_baked_batch_that_a_node_selects_from_is_refused_at_other_batches() {
    // Gather(axis 0, index 0) on an input declared [1, 3, 8, 8] (dynamo's `x[0]`): at batch 2
    // it would silently use the first sample only; edgetune refuses it, naming the node.
    use common::build::*;
    let d = tempfile::tempdir().unwrap();
    let mut m = conv_relu();
    let g = m.graph.as_mut().unwrap();
    g.input[0] = value("x", &[1, 3, 8, 8]);
    g.node[0].input[0] = "first".into();
    g.node.insert(0, node("Gather", "pick_first", &["x", "zero"], &["first"]));
    g.initializer.push(tract_onnx::pb::TensorProto {
        name: "zero".into(),
        dims: vec![1],
        data_type: 7,
        raw_data: 0i64.to_le_bytes().to_vec(),
        ..Default::default()
    });
    g.output[0] = value("y", &[1, 4, 6, 6]);
    let path = d.path().join("gather.onnx");
    save(&m, &path);
    let run = |n: usize| {
        let graph = edgetune::onnx::load(&path).unwrap().graph;
        let x = edgetune::Tensor::from_vec([n, 3, 8, 8], vec![0.5; n * 192]);
        edgetune::Session::new(graph, 1).unwrap().run(vec![x])
    };
    assert_eq!(run(1).unwrap()[0].shape(), &[1, 4, 6, 6]);
    let err = run(2).err().unwrap().to_string();
    assert!(err.contains("node 'pick_first' (Gather): selects along the batch axis"), "{err}");
}

#[test]
fn every_model_family_finetunes_and_deploys() {
    // Issue 19's families through both exporters (models/README.md, "Skeletons"): two Adam steps
    // with ZNorm at 64x64 with a new 3-class head, then the full checker and onnxruntime from the
    // written path agree with edgetune, and the weights moved.
    let families = [
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "regnet_y_400mf",
        "resnext50_32x4d",
    ];
    for name in families.iter().flat_map(|f| [format!("{f}_legacy"), format!("{f}_dynamo")]) {
        let d = tempfile::tempdir().unwrap();
        let model = fixtures().join(format!("models/{name}.onnx"));
        let options = ["--steps", "2", "--batch", "4", "--num-classes", "3", "--optimizer", "adam", "--lr", "1e-3"];
        let (out, _) = finetune_npz(d.path(), &model, &images(4, 64, 3), &[0, 1, 2, 0], &options);
        let x = images(2, 64, 4);
        assert_deploys(&out, &x, &name);
        let (before, after) = (edgetune::onnx::load(&model).unwrap().graph, edgetune::onnx::load(&out).unwrap().graph);
        let first_conv = |g: &edgetune::graph::Graph| {
            let v = g.nodes.iter().find(|n| n.op_type == "Conv").unwrap().inputs[1].unwrap();
            match &g.initializers.iter().find(|i| i.value == v).unwrap().data {
                edgetune::graph::Const::F32(t) => t.clone(),
                _ => unreachable!("conv weights are float"),
            }
        };
        assert_ne!(first_conv(&before).data(), first_conv(&after).data(), "{name}: the first convolution trained");
    }
}
