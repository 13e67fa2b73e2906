//! Bad input never panics: each case gets exit code 2 and one `error:` line naming the culprit
//! (design.md, CLI contract). Models are built in code or cut from a real one.

mod common;

use std::path::{Path, PathBuf};

use common::build::*;
use common::*;
use tract_onnx::pb;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn saved(dir: &Path, name: &str, m: &pb::ModelProto) -> PathBuf {
    let p = dir.join(name);
    save(m, &p);
    p
}

fn write_input(dir: &Path, shape: &[usize]) -> PathBuf {
    let p = dir.join("x.npy");
    let n = shape.iter().product();
    edgetune::data::npy::write_tensor(&p, &edgetune::Tensor::from_vec(shape, vec![0.5; n])).unwrap();
    p
}

fn infer(model: &Path, input: &Path) -> Vec<String> {
    vec!["infer".into(), model.display().to_string(), "--input".into(), input.display().to_string()]
}

fn check(args: Vec<String>, needle: &str) {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_bad_input(&a, needle);
}

#[test]
fn the_valid_base_model_runs() {
    // Guards the cases below: each breaks exactly one thing of this working model.
    let d = tmp();
    let m = saved(d.path(), "ok.onnx", &conv_relu());
    let x = write_input(d.path(), &[2, 3, 8, 8]);
    let out = d.path().join("y.npy");
    let (code, _, err) =
        edgetune(&["infer", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.exists());
}

#[test]
fn missing_empty_truncated_and_foreign_files() {
    let d = tmp();
    check(vec!["inspect".into(), d.path().join("nope.onnx").display().to_string()], "nope.onnx");
    let empty = d.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    check(vec!["inspect".into(), empty.display().to_string()], "empty");
    let full = prost::Message::encode_to_vec(&conv_relu());
    let cut = d.path().join("cut.onnx");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    check(vec!["inspect".into(), cut.display().to_string()], "cut.onnx");
    let text = d.path().join("notes.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    check(vec!["inspect".into(), text.display().to_string()], "notes.onnx");
    check(vec!["inspect".into(), d.path().display().to_string()], "directory");
}

#[test]
fn every_unsupported_op_is_named_in_one_message() {
    let d = tmp();
    let mut m = conv_relu();
    let g = m.graph.as_mut().unwrap();
    g.node.push(node("LSTM", "lstm_1", &["y"], &["z"]));
    g.node.push(node("NonMaxSuppression", "nms", &["z"], &["q"]));
    g.node.push(node("NonMaxSuppression", "nms_2", &["q"], &["r"]));
    let p = saved(d.path(), "m.onnx", &m);
    // Running it: one line naming every offender.
    let x = write_input(d.path(), &[1, 3, 8, 8]);
    check(infer(&p, &x), "LSTM (node 'lstm_1'), NonMaxSuppression (node 'nms'), NonMaxSuppression (node 'nms_2')");
    // inspect: a report (exit 0) that groups them by op type.
    let (code, out, err) = edgetune(&["inspect", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("  LSTM x1 (nodes lstm_1)\n  NonMaxSuppression x2 (nodes nms, nms_2)"), "{out}");
    assert!(out.contains("forward    not supported"), "{out}");
    let (code, json, _) = edgetune(&["inspect", p.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        v["unsupported_ops"][1],
        serde_json::json!({"op": "NonMaxSuppression", "count": 2, "first_nodes": ["nms", "nms_2"]})
    );
    assert_eq!(v["forward_supported"], false);
}

#[test]
fn inspect_checks_attributes_as_a_run_does() {
    // A known op with a form edgetune refuses (Pad mode 'symmetric' does not exist in ONNX):
    // inspect plans the model and names the node, where it used to say "supported (every op)".
    let d = tmp();
    let mut m = conv_relu();
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[0] = "xp".into();
    g.node.insert(0, node("Pad", "pad_1", &["x", "pads"], &["xp"]));
    g.node[0].attribute.push(common::attr::string("mode", "symmetric"));
    g.initializer.push(ints_init("pads", &[0, 0, 1, 1, 0, 0, 1, 1]));
    g.output[0] = value("y", &[-1, 4, 8, 8]);
    let p = saved(d.path(), "pad.onnx", &m);
    let (code, out, err) = edgetune(&["inspect", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("forward    not supported: node 'pad_1' (Pad): pad mode 'symmetric'"), "{out}");
    // The valid model plans for inference and for training.
    let ok = saved(d.path(), "ok.onnx", &conv_relu());
    let (_, out, _) = edgetune(&["inspect", ok.to_str().unwrap()]);
    assert!(out.contains("forward    supported") && out.contains("backward   supported"), "{out}");
}

#[test]
fn dangling_input_and_cycle() {
    let d = tmp();
    let mut m = conv_relu();
    m.graph.as_mut().unwrap().node[1].input[0] = "ghost".into();
    let p = saved(d.path(), "dangling.onnx", &m);
    check(vec!["inspect".into(), p.display().to_string()], "ghost");

    let mut m = conv_relu();
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[0] = "y".into(); // conv reads relu's output, relu reads conv's: a cycle
    let p = saved(d.path(), "cycle.onnx", &m);
    check(vec!["inspect".into(), p.display().to_string()], "cycle");
}

#[test]
fn initializer_data_short_or_dims_overflowing() {
    let d = tmp();
    let mut m = conv_relu();
    m.graph.as_mut().unwrap().initializer[0].raw_data.truncate(40);
    let p = saved(d.path(), "short.onnx", &m);
    check(vec!["inspect".into(), p.display().to_string()], "'w'");

    let mut m = conv_relu();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 40, 1 << 40, 3, 3];
    let p = saved(d.path(), "overflow.onnx", &m);
    check(vec!["inspect".into(), p.display().to_string()], "overflow");

    let mut m = conv_relu();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![4, -3, 3, 3];
    let p = saved(d.path(), "negative.onnx", &m);
    check(vec!["inspect".into(), p.display().to_string()], "negative");
}

fn external(m: &mut pb::ModelProto, location: &str) {
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.raw_data.clear();
    t.data_location = Some(1);
    t.external_data = vec![pb::StringStringEntryProto { key: "location".into(), value: location.into() }];
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let d = tmp();
    let inner = d.path().join("model");
    std::fs::create_dir(&inner).unwrap();
    let bytes: Vec<u8> = vec![0u8; 4 * 3 * 9 * 4];
    std::fs::write(d.path().join("secret.bin"), &bytes).unwrap();
    std::fs::write(inner.join("weights.bin"), &bytes).unwrap();

    let mut ok = conv_relu();
    external(&mut ok, "weights.bin");
    let p = saved(&inner, "ok.onnx", &ok);
    let (code, _, err) = edgetune(&["inspect", p.to_str().unwrap()]);
    assert_eq!(code, 0, "external data inside the folder loads: {err}");

    for (loc, name) in [("../secret.bin", "up.onnx"), (d.path().join("secret.bin").to_str().unwrap(), "abs.onnx")] {
        let mut m = conv_relu();
        external(&mut m, loc);
        let p = saved(&inner, name, &m);
        check(vec!["inspect".into(), p.display().to_string()], "refused");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(d.path().join("secret.bin"), inner.join("link.bin")).unwrap();
        let mut m = conv_relu();
        external(&mut m, "link.bin");
        let p = saved(&inner, "link.onnx", &m);
        check(vec!["inspect".into(), p.display().to_string()], "outside");
    }
    let mut m = conv_relu();
    external(&mut m, "missing.bin");
    let p = saved(&inner, "missing.onnx", &m);
    check(vec!["inspect".into(), p.display().to_string()], "missing.bin");
}

#[test]
fn inputs_whose_rank_or_channels_do_not_fit() {
    let d = tmp();
    let m = saved(d.path(), "m.onnx", &conv_relu());
    let x = write_input(d.path(), &[2, 3, 8]);
    check(infer(&m, &x), "input 'x'");
    let x = write_input(d.path(), &[2, 5, 8, 8]);
    check(infer(&m, &x), "channel");
    // Spatially too small for the 3x3 window: the node says so.
    let x = write_input(d.path(), &[1, 3, 2, 2]);
    check(infer(&m, &x), "conv");
    let not_npy = d.path().join("x.txt");
    std::fs::write(&not_npy, "1 2 3").unwrap();
    check(infer(&m, &not_npy), "x.txt");
}

#[test]
fn outputs_never_overwrite_a_folder() {
    let d = tmp();
    let m = saved(d.path(), "m.onnx", &conv_relu());
    let x = write_input(d.path(), &[1, 3, 8, 8]);
    let args = ["infer", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--output", d.path().to_str().unwrap()];
    assert_bad_input(&args, "directory");
}

#[test]
fn finetune_refuses_an_unwritable_output_before_training() {
    let d = tmp();
    let x = edgetune::Tensor::from_vec([2, 3, 8, 8], vec![0.1; 384]);
    let data = d.path().join("d.npz");
    write_xy_npz(&data, &x, &[0, 1]);
    let m = saved(d.path(), "m.onnx", &conv_relu());
    let spec = format!("npz:{}", data.display());
    let missing = d.path().join("no/such/folder/out.onnx");
    assert_bad_input(
        &["finetune", m.to_str().unwrap(), "--data", &spec, "--output", missing.to_str().unwrap()],
        "cannot write",
    );
    assert_bad_input(
        &["finetune", m.to_str().unwrap(), "--data", &spec, "--output", d.path().to_str().unwrap()],
        "directory",
    );
}

#[test]
fn work_that_cannot_fit_in_memory_is_refused_before_it_starts() {
    // 100000x100000 RGB floats are 112 GiB for the input alone: refused up front (it was an
    // out-of-memory kill at 24 GB), naming the size. The figure is computed by edgetune from
    // /proc/meminfo, so only its form is checked.
    let d = tmp();
    let photo = d.path().join("p.png");
    image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9])).save(&photo).unwrap();
    let model = saved(d.path(), "m.onnx", &conv_relu());
    let p = photo.display().to_string();
    let args = ["infer", model.to_str().unwrap(), "--image", &p, "--size", "100000x100000"];
    assert_bad_input(&args, "1 image(s) at 100000x100000: needs about");
    // A training plan larger than --max-memory allows: the plan's own estimate refuses it
    // (the allocator's cap would end the run at its first allocation past the cap).
    let x = edgetune::Tensor::from_vec([8, 3, 64, 64], vec![0.1; 8 * 3 * 64 * 64]);
    let data = d.path().join("d.npz");
    write_xy_npz(&data, &x, &[0; 8]);
    let spec = format!("npz:{}", data.display());
    let out = d.path().join("o.onnx");
    let m18 = fixtures().join("models/resnet18_bn_op17.onnx");
    let args = [
        "--max-memory",
        "200M",
        "finetune",
        m18.to_str().unwrap(),
        "--data",
        &spec,
        "--steps",
        "1",
        "--batch",
        "8",
        "--output",
        out.to_str().unwrap(),
    ];
    assert_bad_input(&args, "training on inputs of shape [[8, 3, 64, 64]]: needs about");
    assert!(!out.exists());
}

#[test]
fn graph_inputs_that_are_not_float_tensors_are_refused_at_load() {
    // edgetune runs float32 tensors: a sequence input (onnx's test_identity_sequence) or an int8
    // one (whose arithmetic would wrap) cannot be fed, so the model is refused, naming the input.
    // tract's protobuf types know only tensor types: a sequence, map or optional type decodes as
    // a TypeProto holding no tensor type, which is how it is built here.
    let d = tmp();
    let x = write_input(d.path(), &[1, 3, 8, 8]);
    let mut seq = conv_relu();
    seq.graph.as_mut().unwrap().input[0].r#type = Some(pb::TypeProto::default());
    check(infer(&saved(d.path(), "seq.onnx", &seq), &x), "input 'x' is not a tensor");
    let mut int8 = conv_relu();
    if let Some(pb::type_proto::Value::TensorType(t)) =
        int8.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap().value.as_mut()
    {
        t.elem_type = 3;
    }
    check(infer(&saved(d.path(), "int8.onnx", &int8), &x), "input 'x' has element type INT8");
}

#[test]
fn training_a_model_with_two_inputs_is_a_clear_error() {
    // x + z -> Conv -> Relu: finetune feeds one batch; it is refused in one line, not a panic.
    let d = tmp();
    let mut m = conv_relu();
    let g = m.graph.as_mut().unwrap();
    g.input.push(value("z", &[-1, 3, 8, 8]));
    g.node[0].input[0] = "xz".into();
    g.node.insert(0, node("Add", "add_inputs", &["x", "z"], &["xz"]));
    let model = saved(d.path(), "two.onnx", &m);
    let data = d.path().join("d.npz");
    write_xy_npz(&data, &edgetune::Tensor::from_vec([2, 3, 8, 8], vec![0.5; 384]), &[0, 1]);
    let spec = format!("npz:{}", data.display());
    let out = d.path().join("o.onnx");
    let out = out.to_str().unwrap();
    let args = ["finetune", model.to_str().unwrap(), "--data", &spec, "--steps", "1", "--batch", "2", "--output", out];
    assert_bad_input(&args, "the model takes 2 input(s), got 1");
}

#[test]
fn one_image_where_a_batch_belongs_is_named_with_the_fix() {
    let d = tmp();
    let m = saved(d.path(), "ok.onnx", &conv_relu());
    // conv_relu declares [N, 3, 8, 8]; a single [3, 8, 8] image lacks the batch axis.
    let x = write_input(d.path(), &[3, 8, 8]);
    check(
        infer(&m, &x),
        "shape [3, 8, 8] does not fit the declared [N, 3, 8, 8] (no batch axis? a batch of one is [1, ...])",
    );
    // Short by one but not an image of this model: no hint.
    let x = write_input(d.path(), &[1, 3, 8]);
    let (_, _, err) = edgetune(&infer(&m, &x).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("shape [1, 3, 8] does not fit") && !err.contains("no batch axis"), "{err}");
    let x = write_input(d.path(), &[1, 1, 3, 8, 8]);
    check(infer(&m, &x), "shape [1, 1, 3, 8, 8] does not fit the declared [N, 3, 8, 8]");
}
