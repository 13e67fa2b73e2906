//! `edgetune grad-flow`: on a hand-built two-block network the per-path gradients equal the ones
//! derived by hand below (chain rule written out in f64), the sum at a block input equals what
//! `edgetune grad` reports there; on ResNet-20 and ResNet-18 every block is found with its kind
//! and its per-path norms and cosine match PyTorch's (models/gradflow_refs/*.json, written by
//! tools/gradflow_refs.py with torch 2.15.0, float64).

mod common;

use std::path::{Path, PathBuf};

use common::build::*;
use common::*;
use edgetune::data::npy::write_tensor;
use edgetune::Tensor;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;

fn write_labels(path: &Path, labels: &[i64]) {
    let a = ArrayD::from_shape_vec(IxDyn(&[labels.len()]), labels.to_vec()).unwrap();
    a.write_npy(std::fs::File::create(path).unwrap()).unwrap();
}

// The network, batch 1 (row vectors):
//   h0 = x + P                       (P trainable: its gradient is the gradient at h0)
//   block 1, identity skip:           a1 = h0 + h0·W1,        h1 = relu(a1)
//   block 2, projection skip:         a2 = h1·Ws + relu(h1·Wa)·Wb
//   logits = a2·W3, loss = cross-entropy with label 1.
const X: [f64; 3] = [0.6, -0.4, 0.9];
const P: [f64; 3] = [0.1, 0.2, -0.3];
const W1: [[f64; 3]; 3] = [[0.5, -0.3, 0.2], [0.1, 0.4, -0.6], [-0.2, 0.3, 0.7]];
const WS: [[f64; 3]; 3] = [[0.8, 0.1, -0.2], [-0.3, 0.6, 0.2], [0.2, -0.1, 0.9]];
const WA: [[f64; 3]; 3] = [[0.4, -0.7, 0.3], [0.6, 0.2, -0.5], [-0.1, 0.5, 0.2]];
const WB: [[f64; 3]; 3] = [[0.3, 0.5, -0.4], [-0.6, 0.2, 0.1], [0.7, -0.3, 0.5]];
const W3: [[f64; 2]; 3] = [[0.9, -0.5], [-0.4, 0.8], [0.3, 0.6]];
const LABEL: usize = 1;

fn flat<const C: usize>(w: &[[f64; C]]) -> Vec<f32> {
    w.iter().flatten().map(|&v| v as f32).collect()
}

fn two_blocks(dir: &Path) -> PathBuf {
    let m = model(
        vec![
            node("Add", "input_plus_p", &["x", "P"], &["h0"]),
            node("MatMul", "b1", &["h0", "W1"], &["t1"]),
            node("Add", "add1", &["h0", "t1"], &["a1"]),
            node("Relu", "relu1", &["a1"], &["h1"]),
            node("MatMul", "shortcut", &["h1", "Ws"], &["s2"]),
            node("MatMul", "b2a", &["h1", "Wa"], &["t2"]),
            node("Relu", "relu2", &["t2"], &["r2"]),
            node("MatMul", "b2b", &["r2", "Wb"], &["u2"]),
            node("Add", "add2", &["s2", "u2"], &["a2"]),
            node("MatMul", "head", &["a2", "W3"], &["logits"]),
        ],
        vec![
            floats("P", &[1, 3], &P.map(|v| v as f32)),
            floats("W1", &[3, 3], &flat(&W1)),
            floats("Ws", &[3, 3], &flat(&WS)),
            floats("Wa", &[3, 3], &flat(&WA)),
            floats("Wb", &[3, 3], &flat(&WB)),
            floats("W3", &[3, 2], &flat(&W3)),
        ],
        vec![value("x", &[1, 3])],
        vec![value("logits", &[1, 2])],
    );
    let p = dir.join("two_blocks.onnx");
    save(&m, &p);
    p
}

fn row_times<const C: usize>(v: &[f64], w: &[[f64; C]]) -> Vec<f64> {
    (0..C).map(|j| v.iter().zip(w).map(|(a, r)| a * r[j]).sum()).collect()
}

/// v·Wᵀ: the gradient through a MatMul by W.
fn row_times_t<const C: usize>(g: &[f64], w: &[[f64; C]]) -> Vec<f64> {
    w.iter().map(|r| r.iter().zip(g).map(|(a, b)| a * b).sum()).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / (norm(a) * norm(b))
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(p, q)| p + q).collect()
}

/// (skip, branch) gradients at block 1's and block 2's inputs, by the chain rule.
fn by_hand() -> [(Vec<f64>, Vec<f64>); 2] {
    let h0: Vec<f64> = X.iter().zip(P).map(|(a, b)| a + b).collect();
    let a1 = add(&h0, &row_times(&h0, &W1));
    let h1: Vec<f64> = a1.iter().map(|v| v.max(0.0)).collect();
    let t2 = row_times(&h1, &WA);
    let r2: Vec<f64> = t2.iter().map(|v| v.max(0.0)).collect();
    let a2 = add(&row_times(&h1, &WS), &row_times(&r2, &WB));
    let logits = row_times(&a2, &W3);
    let z: f64 = logits.iter().map(|l| l.exp()).sum();
    let dlogits: Vec<f64> = logits.iter().enumerate().map(|(i, l)| l.exp() / z - (i == LABEL) as u8 as f64).collect();
    let da2 = row_times_t(&dlogits, &W3);
    let skip2 = row_times_t(&da2, &WS);
    let dt2: Vec<f64> = row_times_t(&da2, &WB).iter().zip(&t2).map(|(g, t)| if *t > 0.0 { *g } else { 0.0 }).collect();
    let branch2 = row_times_t(&dt2, &WA);
    let da1: Vec<f64> = add(&skip2, &branch2).iter().zip(&a1).map(|(g, a)| if *a > 0.0 { *g } else { 0.0 }).collect();
    let branch1 = row_times_t(&da1, &W1);
    [(da1, branch1), (skip2, branch2)]
}

/// Writes a batch and its labels; returns their paths.
fn inputs(dir: &Path, x: &Tensor, labels: &[i64]) -> (String, String) {
    let (xp, lp) = (dir.join("x.npy"), dir.join("labels.npy"));
    write_tensor(&xp, x).unwrap();
    write_labels(&lp, labels);
    (xp.display().to_string(), lp.display().to_string())
}

/// X with its label: the batch every two-block test runs.
fn the_batch(dir: &Path) -> (String, String) {
    inputs(dir, &Tensor::from_vec([1, 3], X.map(|v| v as f32).to_vec()), &[LABEL as i64])
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = edgetune(args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn close(got: &serde_json::Value, want: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: not a number"));
    // f32 arithmetic against the f64 derivation: a few ulps of the values involved.
    assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-3), "{what}: {got} vs {want}");
}

#[test]
fn two_blocks_match_the_chain_rule_and_grad() {
    let dir = tempfile::tempdir().unwrap();
    let m = two_blocks(dir.path());
    let (x, l) = the_batch(dir.path());
    let report = json_of(&["grad-flow", m.to_str().unwrap(), "--input", &x, "--labels", &l, "--json"]);
    let adds = report["adds"].as_array().unwrap();
    // input_plus_p adds a parameter, not a computed skip path: not a residual Add.
    assert_eq!(adds.len(), 2, "{report}");
    let want = by_hand();
    for (i, (a, (skip, branch))) in adds.iter().zip(&want).enumerate() {
        assert_eq!(a["node"], ["add1", "add2"][i]);
        assert_eq!(a["input"], ["h0", "h1"][i]);
        assert_eq!(a["projection"], i == 1);
        close(&a["skip_norm"], norm(skip), "skip_norm");
        close(&a["branch_norm"], norm(branch), "branch_norm");
        close(&a["cosine"], cosine(skip, branch), "cosine");
        close(&a["sum_norm"], norm(&add(skip, branch)), "sum_norm");
    }
    // The sum at block 1's input is the gradient `grad` computes for P (h0 = x + P, batch 1).
    let npz = dir.path().join("g.npz");
    let (code, _, err) =
        edgetune(&["grad", m.to_str().unwrap(), "--input", &x, "--labels", &l, "--output", npz.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let dp = npz_tensor(&mut read_npz(&npz), "P");
    let dp: Vec<f64> = dp.data().iter().map(|&v| v as f64).collect();
    close(&adds[0]["sum_norm"], norm(&dp), "sum_norm against grad's dP");
    let (skip, branch) = &want[0];
    for (g, w) in dp.iter().zip(add(skip, branch)) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1e-3), "dP {g} vs {w}");
    }
    // ZNorm's effect per tensor: mean 0 and std σ/(σ+ε) ≈ 1 after, one-element tensors aside.
    for t in report["tensors"].as_array().unwrap() {
        assert!(t["znorm_mean"].as_f64().unwrap().abs() < 1e-6, "{t}");
        close(&t["znorm_std"], 1.0, "znorm_std");
    }
}

#[test]
fn a_residual_add_the_loss_does_not_reach_is_left_out() {
    // A second output with its own residual block on a2, placed before the head: it is planned
    // and requires gradients, but the loss (on the first output) sends it none.
    let dir = tempfile::tempdir().unwrap();
    let path = two_blocks(dir.path());
    let mut m: tract_onnx::pb::ModelProto = prost::Message::decode(&std::fs::read(&path).unwrap()[..]).unwrap();
    let g = m.graph.as_mut().unwrap();
    let head = g.node.pop().unwrap();
    g.node.push(node("Relu", "aux_relu", &["a2"], &["ax"]));
    g.node.push(node("MatMul", "aux_branch", &["ax", "W1"], &["ab"]));
    g.node.push(node("Add", "aux_add", &["ax", "ab"], &["aux"]));
    g.node.push(head);
    g.output.push(value("aux", &[1, 3]));
    save(&m, &path);
    let (x, l) = the_batch(dir.path());
    let report = json_of(&["grad-flow", path.to_str().unwrap(), "--input", &x, "--labels", &l, "--json"]);
    let nodes: Vec<&str> = report["adds"].as_array().unwrap().iter().map(|a| a["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["add1", "add2"]);
    let want = by_hand();
    close(&report["adds"][1]["sum_norm"], norm(&add(&want[1].0, &want[1].1)), "add2 sum_norm");
}

#[test]
fn table_plot_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let m = two_blocks(dir.path());
    let (x, l) = the_batch(dir.path());
    let png = dir.path().join("flow.png");
    let (code, out, err) =
        edgetune(&["grad-flow", m.to_str().unwrap(), "--input", &x, "--labels", &l, "--plot", png.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 residual Adds") && out.contains("add2") && out.contains("projection"), "{out}");
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (900, 660));
    // Not every pixel is background: something was drawn.
    assert!(img.to_rgb8().pixels().any(|p| p.0 != [255, 255, 255]));

    // A model without a residual Add has nothing to plot: exit 2, the plot path untouched.
    std::fs::create_dir(dir.path().join("plain")).unwrap();
    let plain = dir.path().join("plain.onnx");
    save(&conv_relu(), &plain);
    let (cx, cl) = inputs(&dir.path().join("plain"), &Tensor::from_vec([1, 3, 8, 8], vec![0.5; 3 * 64]), &[0]);
    let before = std::fs::read(&png).unwrap();
    assert_bad_input(
        &["grad-flow", plain.to_str().unwrap(), "--input", &cx, "--labels", &cl, "--plot", png.to_str().unwrap()],
        "has no residual Add",
    );
    assert_eq!(std::fs::read(&png).unwrap(), before);
    assert_bad_input(&["grad-flow", m.to_str().unwrap(), "--input", "missing.npy", "--labels", &l], "missing.npy");
    let two = dir.path().join("two_labels.npy");
    write_labels(&two, &[1, 0]);
    let two = two.display().to_string();
    assert_bad_input(&["grad-flow", m.to_str().unwrap(), "--input", &x, "--labels", &two], "label");
}

#[test]
fn resnet20_blocks_and_the_law_of_cosines() {
    let model = fixtures().join("models/resnet20_cifar.onnx");
    let (x, labels) = grad_batch("resnet20_cifar-b8-32x32-train");
    let dir = tempfile::tempdir().unwrap();
    let (xp, lp) = inputs(dir.path(), &x, &labels);
    for bn in ["train", "frozen"] {
        let r = json_of(&["grad-flow", model.to_str().unwrap(), "--input", &xp, "--labels", &lp, "--bn", bn, "--json"]);
        let adds = r["adds"].as_array().unwrap();
        // 3 stages of 3 BasicBlocks; the first block of stages 2 and 3 has a projection shortcut.
        assert_eq!(adds.len(), 9, "{r}");
        for (i, a) in adds.iter().enumerate() {
            assert_eq!(a["projection"], i == 3 || i == 6, "{a}");
            let [s, b, c, sum] = ["skip_norm", "branch_norm", "cosine", "sum_norm"].map(|k| a[k].as_f64().unwrap());
            assert!(s > 0.0 && b > 0.0 && c.abs() <= 1.0, "{a}");
            // ‖s + b‖² = ‖s‖² + ‖b‖² + 2·cos·‖s‖‖b‖.
            let law = (s * s + b * b + 2.0 * c * s * b).sqrt();
            assert!((sum - law).abs() <= 1e-6 * sum, "{a}: {law}");
        }
        assert_eq!(r["tensors"].as_array().unwrap().len(), 65, "every trainable tensor of ResNet-20");
    }
}

/// Largest relative difference allowed against PyTorch's float64 figure: 1e-4, or 3 × how far
/// PyTorch's own float32 figure lands from it where that is larger.
fn allowed(f64_ref: f64, f32_ref: f64) -> f64 {
    1e-4_f64.max(3.0 * (f32_ref - f64_ref).abs() / f64_ref.abs())
}

#[test]
fn per_path_norms_match_pytorch() {
    let refs = root().join("models/gradflow_refs");
    let mut cases = 0;
    for entry in std::fs::read_dir(&refs).unwrap() {
        let path = entry.unwrap().path();
        let case = path.file_stem().unwrap().to_str().unwrap().to_string();
        let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (model, bn) = case.rsplit_once('-').unwrap();
        let model_name = model.split("-b").next().unwrap();
        let (x, labels) = grad_batch(&case);
        let dir = tempfile::tempdir().unwrap();
        let (xp, lp) = inputs(dir.path(), &x, &labels);
        let onnx = fixtures().join(format!("models/{model_name}.onnx"));
        let got =
            json_of(&["grad-flow", onnx.to_str().unwrap(), "--input", &xp, "--labels", &lp, "--bn", bn, "--json"]);
        let (got, blocks, f32s) =
            (got["adds"].as_array().unwrap(), want["blocks"].as_array().unwrap(), want["float32"].as_array().unwrap());
        assert_eq!(got.len(), blocks.len(), "{case}: residual Adds found vs PyTorch's blocks");
        for ((g, w), w32) in got.iter().zip(blocks).zip(f32s) {
            assert_eq!(g["projection"], w["projection"], "{case}: {g}");
            for key in ["skip_norm", "branch_norm", "sum_norm"] {
                let (g, w, w32) = (g[key].as_f64().unwrap(), w[key].as_f64().unwrap(), w32[key].as_f64().unwrap());
                assert!((g - w).abs() / w <= allowed(w, w32), "{case}: {key} {g} vs PyTorch {w}");
            }
            // A cosine near zero has no useful relative error: compare it absolutely.
            let (gc, wc, wc32) =
                (g["cosine"].as_f64().unwrap(), w["cosine"].as_f64().unwrap(), w32["cosine"].as_f64().unwrap());
            assert!((gc - wc).abs() <= 1e-4_f64.max(3.0 * (wc32 - wc).abs()), "{case}: cosine {gc} vs PyTorch {wc}");
        }
        cases += 1;
    }
    assert_eq!(cases, 3, "the cases tools/gradflow_refs.py writes");
}
