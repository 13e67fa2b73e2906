//! `--device cuda` where CUDA cannot run (a build without `--features cuda`, or a machine without
//! the NVIDIA driver, cuBLAS or NVRTC): every command answers with one `error:` line that says
//! CUDA was not found, exit 2, and writes nothing. On a machine where CUDA loads, this test steps
//! aside (tests/cuda.rs then runs the GPU path).

mod common;

use common::*;

#[test]
fn cuda_without_cuda_is_a_one_line_error() {
    if edgetune::device::cuda_unavailable().is_none() {
        eprintln!("skipped: CUDA loads on this machine (tests/cuda.rs covers --device cuda)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let m = model.to_str().unwrap();
    let x = edgetune::Tensor::from_vec([2, 3, 32, 32], edgetune::tensor::lcg_values(2 * 3 * 32 * 32, 7));
    let data = dir.path().join("d.npz");
    write_xy_npz(&data, &x, &[1, 2]);
    let (xs, ys) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    edgetune::data::npy::write_tensor(&xs, &x).unwrap();
    ndarray_npy::write_npy(&ys, &ndarray::arr1(&[1i64, 2])).unwrap();
    let npz = format!("npz:{}", data.display());
    let (out_onnx, out_npz, out_npy) =
        (dir.path().join("out.onnx"), dir.path().join("g.npz"), dir.path().join("out.npy"));
    let (xs, ys) = (xs.to_str().unwrap(), ys.to_str().unwrap());
    let commands: Vec<Vec<&str>> = vec![
        vec!["infer", m, "--input", xs, "--output", out_npy.to_str().unwrap()],
        vec!["grad", m, "--input", xs, "--labels", ys, "--output", out_npz.to_str().unwrap()],
        vec!["finetune", m, "--data", &npz, "--steps", "1", "--batch", "2", "--output", out_onnx.to_str().unwrap()],
        vec!["bench", "train", m, "--batch", "2", "--iters", "1"],
        vec!["bench", "grad", m, "--batch", "2", "--iters", "1"],
        vec!["bench", "infer", m, "--iters", "1"],
        vec!["bench", "znorm", "--params", "1000", "--iters", "1"],
    ];
    for mut args in commands {
        args.extend(["--device", "cuda"]);
        assert_bad_input(&args, "CUDA was not found");
    }
    for p in [&out_onnx, &out_npz, &out_npy] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "only the three inputs are in the folder");
}
