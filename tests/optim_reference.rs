//! Optimizer steps against PyTorch (models/optim_refs/, written by tools/optim_refs.py; torch
//! version in each file): 3 steps of SGD+momentum, Adam and AdamW, each without a gradient
//! transform, with ZNorm and with GC, on the CIFAR ResNet-20 with BatchNorm in training mode and
//! the same batch at every step. Every weight, optimizer moment and running statistic within
//! 1e-5 relative of PyTorch's float64 result (design.md; judged on the compact summaries), except
//! where float32 arithmetic alone moves the tensor further than that: there the bound is 3 × that
//! noise (`f32_noise`: the furthest of 12 PyTorch float32 runs of the same steps — default, 1
//! thread, channels-last, oneDNN off, the batch rows in 8 other orders — from float64, in this
//! test's own measure). Adam's g/(|g| + ε) turns the rounding of a gradient entry near zero into
//! a step anywhere in ±lr, and a ReLU input within rounding of zero passes or stops its gradient
//! by the rounding, so that noise reaches 1e-2 on some tensors while it stays near 1e-6 on most:
//! edgetune must be as close to the exact trajectory as float32 lets any implementation be. The
//! losses of the 3 steps likewise (`losses_f32_noise`). The bounds still catch small mistakes:
//! taking Adam's 1 − β₂ in float32 (second moments 1.3e-5 off) fails four of the six Adam cases,
//! and a momentum off by 1e-4 relative fails all three SGD cases.
//!
//! The same comparison runs through the CLI (`edgetune finetune --steps 3 --no-shuffle`) for one
//! case per optimizer, reading the weights back from the exported ONNX file.

mod common;

use common::*;
use edgetune::autodiff::BnMode;
use edgetune::kernels::optim::{Adam, Sgd};
use edgetune::train::optim::{OptimizerName, Rule};
use edgetune::train::trainer::{TrainConfig, Trainer};
use edgetune::train::transform::GradNorm;
use edgetune::{onnx, Tensor};
use serde_json::Value;

const TOL: f64 = 1e-5;

/// 1e-5, or 3 × how far float32 arithmetic alone moves this tensor (`f32_noise`).
fn allowed(s: &Value) -> f64 {
    TOL.max(3.0 * s["f32_noise"].as_f64().expect("f32_noise"))
}

fn cases() -> Vec<Value> {
    let mut files: Vec<_> =
        std::fs::read_dir(root().join("models/optim_refs")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()).collect()
}

fn setup(r: &Value) -> (OptimizerName, f32, f32, f32, GradNorm) {
    let o = &r["optimizer"];
    let name: OptimizerName = o["name"].as_str().unwrap().parse().unwrap();
    let f = |k: &str| o[k].as_f64().unwrap_or(0.0) as f32;
    let norm: GradNorm = r["transform"].as_str().unwrap().parse().unwrap();
    (name, f("lr"), f("momentum"), f("weight_decay"), norm)
}

fn batch() -> (Tensor, Vec<i64>) {
    grad_batch("resnet20_cifar-b8-32x32-train")
}

thread_local! {
    /// The largest raw relative error from float64 that `judge` saw in the current case (the
    /// table in docs/verification.md).
    static RAW: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// Worst error over the named tensors, in units of its bound, and which tensor it was.
fn judge(found: impl Iterator<Item = (String, Tensor)>, refs: &Value, case: &str) -> (String, f64) {
    let mut worst = (String::new(), 0.0);
    let mut n = 0;
    for (name, t) in found {
        let Some(s) = refs.get(&name) else { continue };
        let rel = compare_summary(&name, &t, &s["f64"]).unwrap_or_else(|m| panic!("{case}: {m}"));
        RAW.with(|r| r.set(r.get().max(rel)));
        let e = rel / allowed(s);
        if e > worst.1 {
            worst = (name, e);
        }
        n += 1;
    }
    assert_eq!(n, refs.as_object().unwrap().len(), "{case}: every reference tensor compared");
    worst
}

/// The case's worst loss, weight, running statistic or moment after its 3 steps under `rule`, in
/// units of its bound, and the largest raw error from float64 among the tensors.
fn worst_of(model: &onnx::Model, r: &Value, rule: Rule) -> ((String, f64), f64) {
    let case = r["case"].as_str().unwrap();
    let (x, labels) = batch();
    let (name, lr, _, _, norm) = setup(r);
    let cfg = TrainConfig { train: "all".into(), bn: BnMode::Train, norm, rule };
    let mut trainer = Trainer::new(model.graph.clone(), cfg).unwrap();
    let mut worst = ("loss".to_string(), 0.0f64);
    RAW.with(|r| r.set(0.0));
    let series = |k: &str| r[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    for (step, (want, noise)) in series("losses_f64").into_iter().zip(series("losses_f32_noise")).enumerate() {
        let got = trainer.step(x.clone(), &labels, lr).unwrap().loss as f64;
        let e = ((got - want) / want).abs() / TOL.max(3.0 * noise);
        if e > worst.1 {
            worst = (format!("loss of step {}", step + 1), e);
        }
    }
    let values = trainer.values().unwrap();
    for w in
        [judge(values.clone().into_iter(), &r["params"], case), judge(values.clone().into_iter(), &r["running"], case)]
    {
        if w.1 > worst.1 {
            worst = w;
        }
    }
    let state = &r["state"];
    let (first, second) = if name == OptimizerName::Sgd { ("momentum_buffer", "") } else { ("exp_avg", "exp_avg_sq") };
    for (key, pick_second) in [(first, false), (second, true)].into_iter().filter(|(k, _)| !k.is_empty()) {
        let tensors = trainer.state().unwrap().into_iter().map(|(n, a, b)| {
            let shape = values.iter().find(|(m, _)| *m == n).unwrap().1.shape().to_vec();
            (n, Tensor::from_vec(shape, if pick_second { b } else { a }))
        });
        let refs: serde_json::Map<String, Value> =
            state.as_object().unwrap().iter().map(|(n, s)| (n.clone(), s[key].clone())).collect();
        let w = judge(tensors, &Value::Object(refs), case);
        if w.1 > worst.1 {
            worst = (format!("{key} of {}", w.0), w.1);
        }
    }
    (worst, RAW.with(|r| r.get()))
}

fn rule_of(r: &Value) -> Rule {
    let (name, lr, momentum, wd, _) = setup(r);
    Rule::new(name, lr, momentum, wd, false)
}

fn resnet20() -> onnx::Model {
    onnx::load(&fixtures().join("models/resnet20_cifar.onnx")).unwrap()
}

#[test]
fn three_steps_match_pytorch() {
    let model = resnet20();
    let mut failures = Vec::new();
    for r in cases() {
        let case = r["case"].as_str().unwrap();
        let ((what, e), raw) = worst_of(&model, &r, rule_of(&r));
        let within = &r["f32_runs_within_tol"];
        println!(
            "{case}: worst {what} at {e:.2e} of its bound; largest error from float64 {raw:.1e} (PyTorch: {}/{} \
             float32 runs within {TOL:e})",
            within[0], within[1]
        );
        if e > 1.0 {
            failures.push(format!("{case}: {what} at {e:.2} of its bound"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The bounds are wide only where float32 itself is unstable, so small mistakes still fail:
/// Adam's 1 − β₂ taken in float32 (every second moment 1.3e-5 low: the bug this test missed
/// before Adam's coefficients were computed as torch's), and SGD momentum 1e-4 too large.
#[test]
fn the_bounds_catch_small_mistakes() {
    let model = resnet20();
    for r in cases() {
        let case = r["case"].as_str().unwrap();
        let wrong = match rule_of(&r) {
            Rule::Adam(a) if case == "adam-none" => Rule::Adam(Adam { beta2: 1.0 - 0.001 * (1.0 - 1.3e-5), ..a }),
            Rule::Sgd(s) if case == "sgd-none" => Rule::Sgd(Sgd { momentum: s.momentum * (1.0 + 1e-4), ..s }),
            _ => continue,
        };
        let ((what, e), _) = worst_of(&model, &r, wrong);
        println!("{case} with the mistake: worst {what} at {e:.2} of its bound");
        assert!(e > 1.0, "{case}: the mistake went unnoticed ({what} at {e:.2} of its bound)");
    }
}

#[test]
fn finetune_cli_takes_the_same_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, labels) = batch();
    let data = tmp.path().join("batch.npz");
    write_xy_npz(&data, &x, &labels);
    let model = fixtures().join("models/resnet20_cifar.onnx");
    for r in
        cases().into_iter().filter(|r| ["sgd-none", "adam-znorm", "adamw-gc"].contains(&r["case"].as_str().unwrap()))
    {
        let case = r["case"].as_str().unwrap();
        let (name, lr, momentum, wd, _) = setup(&r);
        let out = tmp.path().join(format!("{case}.onnx"));
        let (code, _, err) = edgetune(&[
            "finetune",
            model.to_str().unwrap(),
            "--data",
            &format!("npz:{}", data.display()),
            "--output",
            out.to_str().unwrap(),
            "--steps",
            "3",
            "--batch",
            "8",
            "--no-shuffle",
            "--bn",
            "train",
            "--optimizer",
            &format!("{name:?}").to_lowercase(),
            "--lr",
            &lr.to_string(),
            "--momentum",
            &momentum.to_string(),
            "--weight-decay",
            &wd.to_string(),
            "--grad-norm",
            r["transform"].as_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(code, 0, "{case}: {err}");
        let exported = onnx::load(&out).unwrap();
        let values = exported.graph.initializers.iter().filter_map(|i| match &i.data {
            edgetune::graph::Const::F32(t) => Some((i.name.clone(), t.clone())),
            _ => None,
        });
        let values: Vec<(String, Tensor)> = values.collect();
        let p = judge(values.clone().into_iter(), &r["params"], case);
        let s = judge(values.into_iter(), &r["running"], case);
        println!(
            "{case} via CLI: worst weight {} at {:.2e}, running stat {} at {:.2e} of the bound",
            p.0, p.1, s.0, s.1
        );
        assert!(p.1 <= 1.0 && s.1 <= 1.0, "{case} via CLI: {} {:.2}, {} {:.2}", p.0, p.1, s.0, s.1);
    }
}
