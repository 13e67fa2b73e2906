//! Shared test helpers: where the fixtures are, reading them, running the peers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edgetune::data::npy::from_array;
use edgetune::Tensor;
use ndarray::ArrayD;
use ndarray_npy::NpzReader;

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
    NpzReader::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

pub fn npz_tensor(npz: &mut NpzReader<std::fs::File>, key: &str) -> Tensor {
    let a: ArrayD<f32> = npz
        .by_name(&format!("{key}.npy"))
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    from_array(a)
}

/// Runs `model` in tract (the peer inference engine) on `x`.
pub fn run_tract(model: &Path, x: &Tensor) -> Tensor {
    use tract_onnx::prelude::{
        tvec, DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue,
    };
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
    let scale = want
        .data()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    let diff = got
        .data()
        .iter()
        .zip(want.data())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Index of the largest entry of each row of a 2-D tensor.
pub fn argmax_rows(t: &Tensor) -> Vec<usize> {
    let cols = t.shape()[1];
    t.data()
        .chunks(cols)
        .map(|r| {
            r.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
        })
        .collect()
}
