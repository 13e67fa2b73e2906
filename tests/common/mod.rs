//! Shared test helpers: where the fixtures are, reading them, running the peers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edgetune::data::npy::from_array;
use edgetune::Tensor;
use ndarray::ArrayD;
use ndarray_npy::NpzReader;

pub mod one_node;

/// The repository root (fixture paths in build/refs/index.json are relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `build/`, made by `bash tools/fixtures.sh` (the README's test command runs it first).
pub fn fixtures() -> PathBuf {
    let dir = root().join("build");
    assert!(
        dir.join("refs/index.json").exists(),
        "fixtures missing: run `bash tools/fixtures.sh` first (the README's test command does)"
    );
    dir
}

pub fn read_npz(path: &Path) -> NpzReader<std::fs::File> {
    NpzReader::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

pub fn npz_tensor(npz: &mut NpzReader<std::fs::File>, key: &str) -> Tensor {
    let a: ArrayD<f32> = npz.by_name(&format!("{key}.npy")).unwrap_or_else(|e| panic!("{key}: {e}"));
    from_array(a)
}

/// The input batch and labels of a gradient reference case (build/refs/grad/CASE.npz, written by
/// tools/grad_refs.py from tools/fixture_data.py's rule).
pub fn grad_batch(case: &str) -> (Tensor, Vec<i64>) {
    let mut npz = read_npz(&fixtures().join(format!("refs/grad/{case}.npz")));
    let x = npz_tensor(&mut npz, "x");
    let labels: ArrayD<i64> = npz.by_name("labels.npy").unwrap_or_else(|e| panic!("{case}: labels: {e}"));
    (x, labels.iter().copied().collect())
}

/// Runs `model` in tract (the peer inference engine) on `x`.
pub fn run_tract(model: &Path, x: &Tensor) -> Tensor {
    use tract_onnx::prelude::{tvec, DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue};
    // Declared output and intermediate shapes fix the batch symbol or the 224x224 size: ignore
    // them, as edgetune does, so tract infers shapes from the actual input.
    let plan = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true)
        .model_for_path(model)
        .and_then(|m| m.with_input_fact(0, f32::fact(x.shape()).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot load {}: {e:?}", model.display()));
    let input = tract_onnx::prelude::Tensor::from_shape(x.shape(), x.data()).unwrap();
    let out = plan.run(tvec!(input.into_tvalue())).unwrap();
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    Tensor::from_vec(view.shape().to_vec(), view.iter().copied().collect())
}

/// Largest absolute difference divided by the reference's scale (its largest magnitude).
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    let scale = want.data().iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = got.data().iter().zip(want.data()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Index of the largest entry of each row of a 2-D tensor.
pub fn argmax_rows(t: &Tensor) -> Vec<usize> {
    let cols = t.shape()[1];
    t.data().chunks(cols).map(|r| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0).collect()
}

/// Runs the `edgetune` binary; returns (exit code, stdout, stderr).
pub fn edgetune(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgetune")).args(args).output().expect("run edgetune");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts the CLI contract for bad input: exit 2, exactly one `error:` line naming `needle`.
pub fn assert_bad_input(args: &[&str], needle: &str) {
    let (code, _, err) = edgetune(args);
    assert_eq!(code, 2, "exit code for {args:?}; stderr: {err}");
    assert!(err.starts_with("error: "), "stderr must start with 'error: ', got {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected, got {err:?}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "stderr should name {needle:?}: {err}");
}

/// Small ONNX models built in code (prost types from tract-onnx) for bad-input tests.
pub mod build {
    use prost::Message;
    use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto, TensorProto};

    pub fn value(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| {
                dim_proto(if d < 0 { dimension::Value::DimParam("N".into()) } else { dimension::Value::DimValue(d) })
            })
            .collect();
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(pb::TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn dim_proto(v: dimension::Value) -> pb::tensor_shape_proto::Dimension {
        pb::tensor_shape_proto::Dimension { value: Some(v), ..Default::default() }
    }

    pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn floats(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 1,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    pub fn model(
        nodes: Vec<pb::NodeProto>,
        inits: Vec<TensorProto>,
        inputs: Vec<pb::ValueInfoProto>,
        outputs: Vec<pb::ValueInfoProto>,
    ) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            producer_name: "edgetune-tests".into(),
            graph: Some(pb::GraphProto {
                name: "g".into(),
                node: nodes,
                initializer: inits,
                input: inputs,
                output: outputs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A valid 1-conv model: x [N,3,8,8] -> Conv(w [4,3,3,3]) -> Relu -> y.
    pub fn conv_relu() -> pb::ModelProto {
        let w: Vec<f32> = (0..4 * 3 * 9).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        model(
            vec![node("Conv", "conv", &["x", "w"], &["c"]), node("Relu", "relu", &["c"], &["y"])],
            vec![floats("w", &[4, 3, 3, 3], &w)],
            vec![value("x", &[-1, 3, 8, 8])],
            vec![value("y", &[-1, 4, 6, 6])],
        )
    }

    pub fn save(m: &pb::ModelProto, path: &std::path::Path) {
        std::fs::write(path, m.encode_to_vec()).unwrap();
    }
}

/// Attribute builders for the code-built models.
pub mod attr {
    use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto};

    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
    }
    pub fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
    }
    pub fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: v, ..Default::default() }
    }
    pub fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::String as i32,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }
}

/// An int64 initializer (shapes, axes, pads ...).
pub fn ints_init(name: &str, v: &[i64]) -> tract_onnx::pb::TensorProto {
    tract_onnx::pb::TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: 7,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Compact tensor summaries written by tools/ scripts (tools/fixture_data.py: `summary`).
/// r_i = ((i · 2654435761) mod 1000) / 1000 − 0.5, as tools/fixture_data.py computes it.
pub fn projection(n: usize) -> Vec<f64> {
    (0..n as u64).map(|i| ((i.wrapping_mul(2654435761)) % 1000) as f64 / 1000.0 - 0.5).collect()
}

/// Relative error of `g` against a summary, or a message saying which part is off.
pub fn compare_summary(name: &str, g: &Tensor, s: &serde_json::Value) -> Result<f64, String> {
    let shape: Vec<usize> = s["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    if g.shape() != shape {
        return Err(format!("{name}: shape {:?}, reference {shape:?}", g.shape()));
    }
    let n = g.len();
    let data: Vec<f64> = g.data().iter().map(|&v| v as f64).collect();
    let norm_ref = s["norm"].as_f64().unwrap();
    let scale = norm_ref.max(1e-30);
    let norm = data.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut worst = (norm - norm_ref).abs() / scale;
    let r = projection(n);
    let rnorm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
    let proj: f64 = data.iter().zip(&r).map(|(a, b)| a * b).sum();
    worst = worst.max((proj - s["proj"].as_f64().unwrap()).abs() / (scale * rnorm));
    let max_abs = s["max_abs"].as_f64().unwrap();
    for pair in s["samples"].as_array().unwrap() {
        let (i, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
        let allowed = max_abs + norm_ref / (n as f64).sqrt();
        worst = worst.max((data[i] - want).abs() / allowed.max(1e-30));
    }
    Ok(worst)
}

/// Writes a `npz:` dataset (arrays `x` and `y`) for `edgetune finetune --data`.
pub fn write_xy_npz(path: &Path, x: &Tensor, y: &[i64]) {
    let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(path).unwrap());
    npz.add_array("x", &edgetune::data::npy::to_array(x)).unwrap();
    npz.add_array("y", &ndarray::Array1::from(y.to_vec())).unwrap();
    npz.finish().unwrap();
}

/// Finetunes `model` on the batch (`x`, `y`) with `options`, into `dir/tuned.onnx`; returns it
/// and what the command printed.
pub fn finetune_npz(dir: &Path, model: &Path, x: &Tensor, y: &[i64], options: &[&str]) -> (std::path::PathBuf, String) {
    let data = dir.join("train.npz");
    write_xy_npz(&data, x, y);
    let out = dir.join("tuned.onnx");
    let spec = format!("npz:{}", data.display());
    let mut args =
        vec!["finetune", model.to_str().unwrap(), "--data", &spec, "--output", out.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(options);
    let (code, stdout, err) = edgetune(&args);
    assert_eq!(code, 0, "{err}");
    (out, stdout)
}
