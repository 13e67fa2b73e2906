//! Pad in every mode (constant, edge, reflect, wrap) and every opset form (pads as attributes
//! before 11, as inputs from 11, on named axes from 18, wrap from 19), forward against
//! onnxruntime (tools/ort_run.py in the light venv) on one-node NCHW models with asymmetric pads;
//! and the forms edgetune refuses, each with one `error:` line naming the node.
//!
//! Pad only copies values, so edgetune must give onnxruntime's output exactly (difference 0).
//! Negative pads (crops) follow onnxruntime: the axis is cropped first and the mode pads what is
//! left (numpy.pad and onnx.reference refuse negative pads, so onnxruntime is the only peer there).
//! The backward rules are checked by finite differences in tests/backward_fd.rs.

mod common;

use std::path::{Path, PathBuf};

use common::build::{floats, model, node, save, value};
use common::*;
use edgetune::data::npy::{read_tensor, write_tensor};
use edgetune::Tensor;
use tract_onnx::pb;

const SHAPE: [usize; 4] = [2, 3, 5, 6];

/// How the node receives its pads.
enum Form {
    /// `pads` (and `value`) as attributes: opsets before 11.
    Attribute,
    /// `pads` (and `constant_value`) as inputs, over every axis: opset 11 on.
    Inputs,
    /// Inputs on the given axes: opset 18 on.
    Axes(Vec<i64>),
}

struct PadCase {
    mode: &'static str,
    opset: i64,
    form: Form,
    pads: Vec<i64>,
}

fn case(mode: &'static str, opset: i64, form: Form, pads: &[i64]) -> PadCase {
    PadCase { mode, opset, form, pads: pads.to_vec() }
}

/// A graph output with no declared shape (the test does not tell either runtime what to expect).
fn unshaped(name: &str) -> pb::ValueInfoProto {
    let mut v = value(name, &[]);
    if let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.shape = None;
    }
    v
}

/// The one-node model `x [2, 3, 5, 6] -> Pad (node 'pad') -> y`, written into `dir`.
fn pad_model(dir: &Path, c: &PadCase, name: &str) -> PathBuf {
    let mut attrs = vec![attr::string("mode", c.mode)];
    let mut inits = Vec::new();
    let mut inputs = vec!["x"];
    match &c.form {
        Form::Attribute => {
            attrs.push(attr::ints("pads", &c.pads));
            attrs.push(attr::float("value", 0.5));
        }
        Form::Inputs | Form::Axes(_) => {
            inits.push(ints_init("pads", &c.pads));
            inits.push(floats("value", &[], &[0.5]));
            inputs.extend(["pads", "value"]);
            if let Form::Axes(axes) = &c.form {
                inits.push(ints_init("axes", axes));
                inputs.push("axes");
            }
        }
    }
    let mut n = node("Pad", "pad", &inputs, &["y"]);
    n.attribute = attrs;
    let dims: Vec<i64> = SHAPE.iter().map(|&d| d as i64).collect();
    let mut m = model(vec![n], inits, vec![value("x", &dims)], vec![unshaped("y")]);
    m.opset_import[0].version = c.opset;
    let path = dir.join(format!("{name}.onnx"));
    save(&m, &path);
    path
}

fn x() -> Tensor {
    Tensor::from_vec(SHAPE, edgetune::tensor::lcg_values(SHAPE.iter().product(), 7))
}

/// onnxruntime on each (model, output file) pair with input `x`, in one process.
fn run_ort(runs: &[(PathBuf, PathBuf)], x: &Path) -> Vec<Tensor> {
    let py = root().join("tools/.venv-light/bin/python");
    let mut cmd = std::process::Command::new(py);
    cmd.arg(root().join("tools/ort_run.py"));
    for (model, y) in runs {
        cmd.arg(model).arg(x).arg(y);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "onnxruntime: {}", String::from_utf8_lossy(&out.stderr));
    runs.iter().map(|(_, y)| read_tensor(y).unwrap()).collect()
}

#[test]
fn every_mode_and_opset_form_matches_onnxruntime() {
    use Form::*;
    let cases = [
        // Pads as attributes (opset 10), before/after differing on H and W.
        case("constant", 10, Attribute, &[0, 0, 1, 2, 0, 0, 3, 1]),
        case("edge", 10, Attribute, &[0, 0, 1, 2, 0, 0, 3, 1]),
        case("reflect", 10, Attribute, &[0, 1, 2, 0, 0, 2, 4, 5]),
        // Pads as inputs (opset 11), also on N and C.
        case("constant", 11, Inputs, &[1, 0, 2, 3, 0, 2, 1, 0]),
        case("edge", 11, Inputs, &[1, 0, 2, 3, 0, 2, 1, 0]),
        case("reflect", 11, Inputs, &[1, 0, 4, 3, 0, 2, 1, 5]),
        // Named axes (opset 18), negative ones included, in any order.
        case("constant", 18, Axes(vec![2, 3]), &[1, 0, 2, 3]),
        case("edge", 18, Axes(vec![3, 2]), &[4, 0, 1, 3]),
        case("reflect", 18, Axes(vec![-1, -2]), &[5, 1, 0, 3]),
        // Wrap (opset 19), by more than an axis' length (W = 6, H = 5).
        case("wrap", 19, Inputs, &[0, 1, 2, 7, 0, 2, 6, 1]),
        case("wrap", 19, Axes(vec![2, 3]), &[11, 0, 3, 13]),
        case("edge", 19, Inputs, &[0, 0, 2, 0, 1, 1, 0, 3]),
        // Negative pads: crop, then pad what is left.
        case("constant", 19, Inputs, &[0, -1, 2, -3, 0, 1, -2, 2]),
        case("edge", 19, Inputs, &[0, 0, -2, 3, 0, 0, 2, -4]),
        case("reflect", 19, Axes(vec![2, 3]), &[-1, 2, 3, -1]),
        case("wrap", 19, Axes(vec![2, 3]), &[3, -2, -1, 4]),
    ];
    let d = tempfile::tempdir().unwrap();
    let xp = d.path().join("x.npy");
    write_tensor(&xp, &x()).unwrap();
    let runs: Vec<(PathBuf, PathBuf)> = (0..cases.len())
        .map(|k| (pad_model(d.path(), &cases[k], &format!("case{k}")), d.path().join(format!("y{k}.npy"))))
        .collect();
    let peer = run_ort(&runs, &xp);
    for ((c, (path, _)), want) in cases.iter().zip(&runs).zip(peer) {
        let what = format!("{} opset {} pads {:?}", c.mode, c.opset, c.pads);
        let graph = edgetune::onnx::load(path).unwrap_or_else(|e| panic!("{what}: {e}")).graph;
        let ours = edgetune::Session::new(graph, 1)
            .and_then(|s| s.run(vec![x()]))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .remove(0);
        assert_eq!(ours.shape(), want.shape(), "{what}: shape");
        let diff = ours.data().iter().zip(want.data()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert_eq!(diff, 0.0, "{what}: differs from onnxruntime by {diff}");
        println!("{what}: {:?}, same as onnxruntime", ours.shape());
    }
}

/// `edgetune infer` on the model: exit 2 with one line naming the node and `needle`.
fn refused(c: PadCase, needle: &str) {
    let d = tempfile::tempdir().unwrap();
    let path = pad_model(d.path(), &c, "m");
    let xp = d.path().join("x.npy");
    write_tensor(&xp, &x()).unwrap();
    let args = ["infer", path.to_str().unwrap(), "--input", xp.to_str().unwrap()];
    assert_bad_input(&args, "'pad'");
    assert_bad_input(&args, needle);
    let (_, _, err) = edgetune(&args);
    println!("{} opset {} pads {:?}: {}", c.mode, c.opset, c.pads, err.trim_end());
}

#[test]
fn forms_onnxruntime_refuses_are_refused_naming_the_node() {
    use Form::*;
    // Reflect mirrors at most length − 1 (W = 6: 5); onnxruntime refuses 6 at run time.
    refused(case("reflect", 11, Inputs, &[0, 0, 0, 6, 0, 0, 0, 0]), "reflect");
    refused(case("reflect", 11, Inputs, &[0, 0, 0, 0, 0, 0, 0, 6]), "at most 5");
    // After a crop of 2 on H (5 -> 3) reflect mirrors at most 2.
    refused(case("reflect", 18, Axes(vec![2]), &[-2, 3]), "at most 2");
    // An axis cropped to one element has nothing to mirror.
    refused(case("reflect", 18, Axes(vec![2]), &[-4, 1]), "at most 0");
    // Edge and wrap cannot extend an axis cropped to nothing.
    refused(case("edge", 18, Axes(vec![2]), &[-5, 1]), "empty");
    refused(case("wrap", 19, Axes(vec![3]), &[2, -6]), "empty");
    // Cropping more than the axis holds.
    refused(case("constant", 18, Axes(vec![3]), &[-4, -3]), "remove");
}

#[test]
fn modes_the_spec_does_not_define_are_refused_naming_the_node() {
    // Wrap exists from opset 19 (Pad-19); an opset-18 model cannot use it.
    refused(case("wrap", 18, Form::Inputs, &[0, 0, 1, 1, 0, 0, 1, 1]), "opset 19");
    refused(case("symmetric", 19, Form::Inputs, &[0, 0, 1, 1, 0, 0, 1, 1]), "'symmetric'");
}
