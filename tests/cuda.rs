//! The CUDA path against the CPU path (`--features cuda`; each test prints why it skips where no
//! GPU can be opened). The CPU path is itself checked against PyTorch, tract, onnxruntime and
//! finite differences; here the GPU must give the same numbers within the design's float32
//! tolerances (design.md, "Numerics"): outputs 1e-4 relative to the output scale, gradients 1e-3
//! relative per tensor, and optimizer state as close to the CPU as the CPU is to PyTorch.
#![cfg(feature = "cuda")]

mod common;

use common::one_node::{gemm_cases, values, Case};
use common::*;
use edgetune::autodiff::{BnMode, GradPlan};
use edgetune::device::Device;
use edgetune::train::optim::{OptimizerName, Rule};
use edgetune::train::trainer::{TrainConfig, Trainer};
use edgetune::train::transform::GradNorm;
use edgetune::{onnx, train::select, Session, Tensor};

/// Opens the GPU, or says why the test is skipped.
fn gpu_here(test: &str) -> bool {
    match edgetune::gpu::Gpu::open() {
        Ok(g) => {
            eprintln!("{test}: running on {}", g.name());
            true
        }
        Err(e) => {
            eprintln!("{test}: skipped, no GPU: {e}");
            false
        }
    }
}

/// Largest difference over the reference's largest magnitude, as `rel_err`, in f64.
fn rel(got: &Tensor, want: &Tensor) -> f64 {
    rel_err(got, want) as f64
}

/// One node on the GPU and on the CPU: output within 1e-5 and every gradient within 1e-4 of the
/// CPU's scale. These shapes are small (sums of ≤ 100 terms), so both sides round alike to a
/// few float32 ulps; a wrong index or rule is off by O(1).
fn same_as_cpu(name: &str, case: Case) {
    let (graph, _dir) = case.graph();
    let trainable = select::trainable(&graph, "all").unwrap();
    let plan = GradPlan::build(&graph, &[], &trainable, case.bn, false).unwrap();
    let session = edgetune::gpu::GradSession::from_plan(&graph, plan, vec![]).unwrap();
    let plan = session.plan();
    let tape = plan.forward(vec![], &[]);
    let seed = Tensor::from_vec(tape.logits.shape(), values(tape.logits.len(), 99));
    let y = tape.logits.clone();
    let grads = plan.backward(tape, seed.clone()).unwrap();
    let (gy, ggrads) = session.vjp(&[], &seed).unwrap_or_else(|e| panic!("{name}: {e}"));
    let e = rel(&gy, &y);
    assert!(e <= 1e-5, "{name}: output differs by {e:.2e}");
    for (k, (a, b)) in ggrads.iter().zip(&grads).enumerate() {
        let e = rel(a, b);
        assert!(e <= 1e-4, "{name}: gradient of input {k} differs by {e:.2e}");
    }
    eprintln!("{name}: ok");
}

#[test]
fn every_gpu_op_matches_the_cpu() {
    if !gpu_here("every_gpu_op_matches_the_cpu") {
        return;
    }
    let conv = |x: Vec<usize>, w: Vec<usize>, bias: bool, attrs| {
        let mut inputs = vec![x, w.clone()];
        if bias {
            inputs.push(vec![w[0]]);
        }
        Case::new("Conv", inputs).attrs(attrs)
    };
    same_as_cpu(
        "conv 3x3 pad 1 bias",
        conv(vec![2, 2, 5, 5], vec![3, 2, 3, 3], true, vec![attr::ints("pads", &[1; 4])]),
    );
    same_as_cpu(
        "conv stride 2 dilation 2 asymmetric pads",
        conv(
            vec![1, 4, 7, 6],
            vec![4, 4, 2, 3],
            false,
            vec![attr::ints("strides", &[2, 2]), attr::ints("dilations", &[2, 1]), attr::ints("pads", &[1, 0, 0, 2])],
        ),
    );
    same_as_cpu("conv 1x1 pointwise", conv(vec![2, 3, 4, 4], vec![5, 3, 1, 1], true, vec![]));
    same_as_cpu(
        "conv 1x1 stride 2",
        conv(vec![3, 3, 5, 5], vec![4, 3, 1, 1], false, vec![attr::ints("strides", &[2, 2])]),
    );
    same_as_cpu(
        "conv 7x7 stride 2 pad 3 (a ResNet stem)",
        conv(
            vec![2, 3, 12, 11],
            vec![4, 3, 7, 7],
            false,
            vec![attr::ints("strides", &[2, 2]), attr::ints("pads", &[3; 4])],
        ),
    );
    for (bn, name) in [(BnMode::Train, "batchnorm train"), (BnMode::Frozen, "batchnorm frozen")] {
        let mut c = Case::new("BatchNormalization", vec![vec![2, 3, 3, 3], vec![3], vec![3]])
            .attrs(vec![attr::float("epsilon", 1e-3)]);
        c.bn = bn;
        c.fixed = vec![vec![0.1, -0.2, 0.3], vec![0.8, 1.2, 0.6]];
        same_as_cpu(name, c);
    }
    same_as_cpu("relu", Case::new("Relu", vec![vec![3, 7]]));
    same_as_cpu("add", Case::new("Add", vec![vec![2, 3, 4], vec![2, 3, 4]]));
    let pool = |extra: Vec<_>| {
        let mut a =
            vec![attr::ints("kernel_shape", &[3, 3]), attr::ints("strides", &[2, 2]), attr::ints("pads", &[1; 4])];
        a.extend(extra);
        a
    };
    same_as_cpu("maxpool 3x3 s2 p1", Case::new("MaxPool", vec![vec![1, 2, 7, 6]]).attrs(pool(vec![])));
    same_as_cpu(
        "maxpool ceil_mode",
        Case::new("MaxPool", vec![vec![1, 2, 6, 6]]).attrs(pool(vec![attr::int("ceil_mode", 1)])),
    );
    same_as_cpu("global average pool", Case::new("GlobalAveragePool", vec![vec![2, 3, 4, 5]]));
    for (name, case) in gemm_cases() {
        same_as_cpu(name, case);
    }
    same_as_cpu(
        "transpose NHWC to NCHW",
        Case::new("Transpose", vec![vec![2, 3, 4, 5]]).attrs(vec![attr::ints("perm", &[0, 3, 1, 2])]),
    );
    same_as_cpu("pad", Case::new("Pad", vec![vec![1, 2, 3, 3]]).ints(vec![Some(vec![0, 0, 1, 2, 0, 0, 2, 1])]));
    same_as_cpu("flatten", Case::new("Flatten", vec![vec![2, 3, 2]]).attrs(vec![attr::int("axis", 2)]));
    same_as_cpu("reshape", Case::new("Reshape", vec![vec![2, 3, 4]]).ints(vec![Some(vec![4, -1])]));
}

fn model(name: &str) -> edgetune::graph::Graph {
    onnx::load(&fixtures().join(format!("models/{name}.onnx"))).unwrap().graph
}

#[test]
fn inference_and_gradients_of_whole_resnets_match_the_cpu() {
    if !gpu_here("inference_and_gradients_of_whole_resnets_match_the_cpu") {
        return;
    }
    // The ImageNet ResNet-50 from npm: NHWC behind a Transpose, explicit Pads, a trailing Softmax.
    let graph = model("resnet50_imagenet");
    let x = Tensor::from_vec([2, 224, 224, 3], edgetune::tensor::lcg_values(2 * 224 * 224 * 3, 3));
    let want = Session::new(graph.clone(), 0).unwrap().run(vec![x.clone()]).unwrap();
    let got = edgetune::gpu::Inference::new(graph).unwrap().run(vec![x]).unwrap();
    let e = rel(&got[0], &want[0]);
    assert!(e <= 1e-4, "resnet50_imagenet: inference output differs by {e:.2e}");
    eprintln!("resnet50_imagenet inference: {e:.1e}");
    for (name, file) in
        [("resnet20_cifar", "resnet20_cifar-b8-32x32"), ("resnet18_bn_op17", "resnet18_bn_op17-b4-64x64")]
    {
        let graph = model(name);
        for bn in [BnMode::Train, BnMode::Frozen] {
            let (x, labels) = grad_batch(&format!("{file}-{}", if bn == BnMode::Train { "train" } else { "frozen" }));
            if bn == BnMode::Train {
                let want = Session::new(graph.clone(), 0).unwrap().run(vec![x.clone()]).unwrap();
                let got = edgetune::gpu::Inference::new(graph.clone()).unwrap().run(vec![x.clone()]).unwrap();
                let e = rel(&got[0], &want[0]);
                assert!(e <= 1e-4, "{name}: inference output differs by {e:.2e}");
                eprintln!("{name} inference: {e:.1e}");
            }
            let trainable = select::trainable(&graph, "all").unwrap();
            let session = edgetune::gpu::GradSession::new(&graph, x.shape(), &trainable, bn).unwrap();
            let tape = session.plan().forward(vec![x.clone()], &[]);
            let (loss, dlogits) = edgetune::train::loss::softmax_cross_entropy(&tape.logits, &labels).unwrap();
            let want = session.plan().backward(tape, dlogits).unwrap();
            let (gloss, got) = session.gradients(&x, &labels).unwrap();
            assert!(((gloss - loss) / loss).abs() <= 1e-5, "{name} {bn:?}: loss {gloss} vs {loss}");
            let worst = got.iter().zip(&want).map(|(a, b)| rel(a, b)).fold(0.0, f64::max);
            assert!(worst <= 1e-3, "{name} {bn:?}: a gradient differs by {worst:.2e}");
            eprintln!("{name} {bn:?} gradients: worst {worst:.1e}");
        }
    }
}

/// Three steps on the CPU and on the GPU from the same start: every weight, running statistic
/// and optimizer moment. SGD and anything after ZNorm within 1e-4 per tensor; plain Adam and
/// Adam after GC within 5e-2: two float32 runs of those cases differ by that much (PyTorch's own
/// twelve float32 runs reach 2.2e-2 from float64, `f32_noise` in models/optim_refs/): Adam's
/// first step is lr·g/(|g| + ε), so a gradient entry that is zero up to rounding moves its weight
/// anywhere in ±lr, and BatchNorm in training mode spreads that by step 3.
#[test]
fn three_optimizer_steps_match_the_cpu() {
    if !gpu_here("three_optimizer_steps_match_the_cpu") {
        return;
    }
    let graph = model("resnet20_cifar");
    let (x, labels) = grad_batch("resnet20_cifar-b8-32x32-train");
    for (opt, norm) in [
        (OptimizerName::Sgd, "none"),
        (OptimizerName::Sgd, "znorm"),
        (OptimizerName::Sgd, "gc"),
        (OptimizerName::Sgd, "clip:0.5"),
        (OptimizerName::Adam, "znorm"),
        (OptimizerName::Adamw, "znorm"),
        (OptimizerName::Adam, "none"),
        (OptimizerName::Adam, "gc"),
    ] {
        let tol = if opt == OptimizerName::Sgd || norm == "znorm" { 1e-4 } else { 5e-2 };
        let make = |device| {
            let rule = Rule::new(opt, 0.01, 0.9, 5e-4, false);
            let norm: GradNorm = norm.parse().unwrap();
            let mut t = Trainer::new(graph.clone(), TrainConfig { train: "all".into(), bn: BnMode::Train, norm, rule })
                .unwrap();
            t.set_device(device).unwrap();
            t
        };
        let (mut cpu, mut gpu) = (make(Device::Cpu), make(Device::Cuda));
        for step in 0..3 {
            let a = cpu.step(x.clone(), &labels, 0.01).unwrap();
            let b = gpu.step(x.clone(), &labels, 0.01).unwrap();
            assert!(
                ((a.loss - b.loss) / a.loss).abs() <= 1e-4,
                "{opt:?}-{norm} step {step}: loss {} vs {}",
                b.loss,
                a.loss
            );
        }
        let mut worst = (String::new(), 0.0f64);
        for ((n, a), (_, b)) in cpu.values().unwrap().iter().zip(&gpu.values().unwrap()) {
            let e = rel(b, a);
            if e > worst.1 {
                worst = (n.clone(), e);
            }
        }
        for ((n, a1, a2), (_, b1, b2)) in cpu.state().unwrap().iter().zip(&gpu.state().unwrap()) {
            for (a, b) in [(a1, b1), (a2, b2)].into_iter().filter(|(a, _)| !a.is_empty()) {
                let e = rel(&Tensor::from_vec([b.len()], b.clone()), &Tensor::from_vec([a.len()], a.clone()));
                if e > worst.1 {
                    worst = (format!("{n} (state)"), e);
                }
            }
        }
        eprintln!("{opt:?}-{norm}: worst {} {:.1e} (bound {tol:.0e})", worst.0, worst.1);
        assert!(worst.1 <= tol, "{opt:?}-{norm}: {} differs by {:.2e}", worst.0, worst.1);
    }
}

#[test]
fn the_cli_runs_on_the_gpu() {
    if !gpu_here("the_cli_runs_on_the_gpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = fixtures().join("models/resnet20_cifar.onnx");
    let m = m.to_str().unwrap();
    let (x, labels) = grad_batch("resnet20_cifar-b8-32x32-train");
    let data = dir.path().join("d.npz");
    write_xy_npz(&data, &x, &labels);
    let out = dir.path().join("out.onnx");
    let npz = format!("npz:{}", data.display());
    let args = ["finetune", m, "--data", &npz, "--steps", "3", "--batch", "8", "--no-shuffle", "--quiet"];
    let (code, stdout, err) = edgetune(&[&args[..], &["--output", out.to_str().unwrap(), "--device", "cuda"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("training on "), "{stdout}");
    let cpu_out = dir.path().join("cpu.onnx");
    let (code, _, err) = edgetune(&[&args[..], &["--output", cpu_out.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{err}");
    // The two finetuned models give the same class scores (finetune defaults to Adam: 5e-2, as above).
    let a = Session::new(onnx::load(&out).unwrap().graph, 0).unwrap().run(vec![x.clone()]).unwrap();
    let b = Session::new(onnx::load(&cpu_out).unwrap().graph, 0).unwrap().run(vec![x.clone()]).unwrap();
    let e = rel(&a[0], &b[0]);
    assert!(e <= 5e-2, "finetuned outputs differ by {e:.2e}");

    for (bench, extra) in [
        ("znorm", vec!["--params", "1000000"]),
        ("train", vec![m, "--batch", "8", "--size", "32x32"]),
        ("grad", vec![m, "--batch", "8", "--size", "32x32"]),
        ("infer", vec![m, "--batch", "8"]),
    ] {
        let args = [&["bench", bench][..], &extra, &["--iters", "2", "--json", "--device", "cuda"]].concat();
        let (code, stdout, err) = edgetune(&args);
        assert_eq!(code, 0, "bench {bench}: {err}");
        assert!(stdout.contains("\"device\":\"cuda\""), "bench {bench} reports no GPU figure: {stdout}");
        eprintln!("{stdout}");
    }
}
