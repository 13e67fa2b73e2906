//! Whole-model gradients against PyTorch: for each case in models/grad_refs/ (written by
//! tools/grad_refs.py; the torch version is in each file), the loss within 1e-5 relative of
//! PyTorch's float32 loss, and every trainable tensor within 1e-3 relative (design.md, "Numerics")
//! of PyTorch's float64 gradient, judged on the compact summary the file keeps: the norm, a
//! projection on a fixed pseudo-random vector, and 16 sampled entries. BatchNorm running
//! statistics after the forward pass are judged the same way.
//!
//! Where PyTorch's own float32 gradient is further than 1e-3 from its float64 one (`f32_rel_err`,
//! up to 2e-2 for ResNet-50 in train mode: an ill-conditioned gradient, see tools/grad_refs.py),
//! no float32 implementation can meet 1e-3; there the bound is 3 × PyTorch's own float32 error:
//! edgetune must be about as close to the exact value as PyTorch is.
//!
//! Bounds: for a gradient g with ‖g − g_ref‖ ≤ ε·‖g_ref‖, the norm differs by at most that, the
//! projection on r by at most ε·‖g_ref‖·‖r‖ (Cauchy–Schwarz), and a sampled entry by at most
//! ε·‖g_ref‖ (we use the stricter ε·(max|g_ref| + ‖g_ref‖/√n)).

mod common;

use std::collections::HashMap;

use common::*;
use edgetune::autodiff::{BnMode, GradPlan};
use edgetune::train::{loss, select};
use edgetune::{onnx, Tensor};
use serde_json::Value;

const GRAD_TOL: f64 = 1e-3;
const LOSS_TOL: f64 = 1e-5;

/// A tensor's allowed relative error: 1e-3, or 3 × PyTorch's own float32 error where larger.
fn allowed(s: &Value) -> f64 {
    GRAD_TOL.max(3.0 * s["f32_rel_err"].as_f64().unwrap())
}

#[test]
fn gradients_match_pytorch() {
    let dir = fixtures();
    let mut files: Vec<_> =
        std::fs::read_dir(root().join("models/grad_refs")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 8, "expected 8 reference cases, found {}", files.len());
    let mut failures = Vec::new();
    for f in files {
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let case = r["case"].as_str().unwrap();
        let bn = if r["bn"] == "train" { BnMode::Train } else { BnMode::Frozen };
        let model = onnx::load(&dir.join(format!("models/{}.onnx", r["model"].as_str().unwrap()))).unwrap();
        let graph = &model.graph;
        let (x, labels) = grad_batch(case);

        let trainable = select::trainable(graph, "all").unwrap();
        let plan = GradPlan::new(graph, &[x.shape().to_vec()], &trainable, bn).unwrap();
        let tape = plan.forward(vec![x], &[]);
        let updates: HashMap<usize, Tensor> = tape.updates.iter().cloned().collect();
        let (l, dlogits) = loss::softmax_cross_entropy(&tape.logits, &labels).unwrap();
        let grads = plan.backward(tape, dlogits).unwrap();

        // Errors are in units of their bound (<= 1 passes).
        let want_loss = r["loss"].as_f64().unwrap();
        let loss_err = (l as f64 - want_loss).abs() / want_loss.abs();
        let mut worst = ("loss".to_string(), loss_err / LOSS_TOL);
        let params = r["params"].as_object().unwrap();
        let names: Vec<&str> =
            graph.initializers.iter().zip(&trainable).filter(|(_, t)| **t).map(|(i, _)| i.name.as_str()).collect();
        assert_eq!(names.len(), params.len(), "{case}: trainable set differs from torch's named_parameters");
        let mut judge = |name: String, t: &Tensor, s: &Value| {
            let e = compare_summary(&name, t, &s["f64"]).unwrap_or_else(|m| panic!("{case}: {m}")) / allowed(s);
            if e > worst.1 {
                worst = (name, e);
            }
        };
        for (name, g) in names.iter().zip(&grads) {
            judge(name.to_string(), g, &params[*name]);
        }
        for (name, s) in r["running"].as_object().unwrap() {
            let init = graph
                .initializers
                .iter()
                .find(|i| i.name == *name)
                .unwrap_or_else(|| panic!("{case}: no initializer {name}"));
            let after = match (updates.get(&init.value), &init.data) {
                (Some(t), _) => t.clone(),
                (None, edgetune::graph::Const::F32(t)) => t.clone(),
                _ => unreachable!("running statistics are float"),
            };
            judge(format!("running stat {name}"), &after, s);
        }
        println!(
            "{case}: loss {l:.6} (torch {want_loss:.6}, rel {loss_err:.1e}); worst: {} at {:.1e} of its bound",
            worst.0, worst.1
        );
        if worst.1 > 1.0 {
            failures.push(format!("{case}: {} at {:.2} of its bound (loss rel {loss_err:.2e})", worst.0, worst.1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
