//! The ONNX backend node test suite (`onnx.backend.test.case.node`, onnx 1.23.2) on every op
//! edgetune supports: build/backend-node/, written by tools/backend_node_cases.py (which
//! tools/fixtures.sh runs; its doc lists the rewrites it applies, e.g. integer inputs as
//! initializers). Each case runs at its own opset, and each output is compared the way onnx's
//! backend runner does (`numpy.testing.assert_allclose` with the case's rtol/atol, 1e-3/1e-7:
//! shapes equal, |got − want| <= atol + rtol·|want|, NaN matches NaN, infinities match exactly).
//!
//! Every case passes, or it is listed below (REFUSED, with the reasons in docs/backend-node.md)
//! and edgetune refuses it with a one-line error at load or plan time that
//! contains the listed text. No case may give a wrong result, and a listed case that passes must
//! leave the list.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use edgetune::data::npy::read_tensor;
use edgetune::{onnx, Session, Tensor};

/// A group of cases edgetune refuses on purpose: their names (`*` matches any run of
/// characters) and a text the one-line refusal must contain. docs/backend-node.md, "Refused
/// forms", gives the reason for each group (the numbers match).
struct Refused {
    cases: &'static [&'static str],
    says: &'static str,
}

const REFUSED: &[Refused] = &[
    // 1. Pooling over 1-D and 3-D windows (only 2-D NCHW pooling).
    Refused {
        cases: &["test_averagepool_1d_*", "test_averagepool_3d_*", "test_maxpool_1d_*", "test_maxpool_3d_*"],
        says: "(2-D windows only)",
    },
    // 2. Outputs beyond the first: Dropout's mask, MaxPool's indices, BatchNormalization's
    //    running statistics in training mode.
    Refused {
        cases: &[
            "test_dropout_default_mask*",
            "test_training_dropout*_mask",
            "test_maxpool_with_argmax_*",
            "test_batchnorm_*_training_mode",
        ],
        says: "(beyond the first) is not supported",
    },
    // 3. Dropout in training mode with a ratio above 0 (random at inference).
    Refused {
        cases: &["test_training_dropout", "test_training_dropout_default"],
        says: "(random dropout) is not supported",
    },
    // 4. Integer data through ops that have no integer form (folded constants only).
    Refused { cases: &["test_clip_default_int8_*", "test_maxpool_2d_uint8"], says: "on integer constants" },
    // 5. Inputs that are not tensors (sequence, optional).
    Refused { cases: &["test_identity_sequence", "test_identity_opt"], says: "is not a tensor" },
    // 6. Tensors of element types edgetune does not hold: float16, bfloat16, the float8, 4-bit,
    //    2-bit and float4 types, strings.
    Refused {
        cases: &[
            "test_cast_*FLOAT16_to_*",
            "test_cast_FLOAT8*_to_*",
            "test_cast_e8m0_FLOAT8E8M0_to_*",
            "test_cast_*INT4_to_*",
            "test_cast_*INT2_to_*",
            "test_cast_FLOAT4E2M1_to_*",
            "test_equal_string*",
            "test_range_*float16_type_*",
        ],
        says: "(unsupported)",
    },
    // 7. Cast of a run-time tensor to a non-float type (float8, int4, int2, float4, ...).
    Refused {
        cases: &[
            "test_cast_FLOAT_to_FLOAT8*",
            "test_cast_FLOAT_to_*INT4",
            "test_cast_FLOAT_to_*INT2",
            "test_cast_FLOAT_to_FLOAT4E2M1",
            "test_cast_no_saturate_FLOAT_to_*",
            "test_cast_e8m0_FLOAT_to_*",
        ],
        says: "(float types only)",
    },
];

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return name == pattern;
    }
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

fn listed(groups: &[&Refused], case: &str) -> Option<&'static str> {
    groups.iter().find(|g| g.cases.iter().any(|p| glob(p, case))).map(|g| g.says)
}

#[derive(Debug)]
enum Outcome {
    Pass,
    /// (stage, the error's one line)
    Refused(&'static str, String),
    Wrong(String),
}

/// numpy.testing.assert_allclose(got, want, rtol, atol) as onnx's runner calls it.
fn allclose(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    let mut worst: Option<(usize, f32, f32)> = None;
    let mut bad = 0;
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if w.is_infinite() || g.is_infinite() {
            g == w
        } else {
            ((g as f64) - (w as f64)).abs() <= atol + rtol * (w as f64).abs()
        };
        if !ok {
            bad += 1;
            worst.get_or_insert((i, g, w));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, g, w)) => Err(format!("{bad} of {} values differ; first at {i}: {g} vs {w}", want.len())),
    }
}

fn run_case(dir: &Path, rtol: f64, atol: f64) -> Outcome {
    let model = match onnx::load(&dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return Outcome::Refused("load", e.to_string()),
    };
    let n_inputs = model.graph.inputs.len();
    let n_outputs = model.graph.outputs.len();
    let session = match Session::new(model.graph, 1) {
        Ok(s) => s,
        Err(e) => return Outcome::Refused("load", e.to_string()),
    };
    let mut sets: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("test_data_set_"))
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Outcome::Wrong("loaded, but the case has no data to run (a non-tensor input?)".into());
    }
    for set in sets {
        let read = |kind: &str, k: usize| read_tensor(&set.join(format!("{kind}_{k}.npy"))).unwrap();
        let inputs: Vec<Tensor> = (0..n_inputs).map(|k| read("input", k)).collect();
        let outputs = match session.run(inputs) {
            Ok(o) => o,
            Err(e) => return Outcome::Refused("plan", e.to_string()),
        };
        if outputs.len() != n_outputs {
            return Outcome::Wrong(format!("{} outputs, the graph declares {n_outputs}", outputs.len()));
        }
        for (k, got) in outputs.iter().enumerate() {
            if let Err(e) = allclose(got, &read("output", k), rtol, atol) {
                return Outcome::Wrong(format!("output {k}: {e}"));
            }
        }
    }
    Outcome::Pass
}

#[derive(Default)]
struct Counts {
    pass: usize,
    refused: usize,
    wrong: usize,
    /// Refused but not listed, listed but passing, or refused with another message.
    unlisted: usize,
}

#[test]
fn every_backend_node_case_passes_or_is_a_documented_refusal() {
    let root = common::root().join("build/backend-node");
    let index_path = root.join("index.json");
    assert!(index_path.exists(), "build/backend-node missing: run `bash tools/fixtures.sh` first");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();

    // The cases cover exactly the op table (the generator parses src/ops/mod.rs; a stale
    // build/backend-node means tools/fixtures.sh was not run after the table changed).
    let mut ops: Vec<String> =
        edgetune::ops::runtime_ops().chain(edgetune::ops::FOLD_ONLY.iter().copied()).map(String::from).collect();
    ops.sort();
    let generated: Vec<String> =
        index["ops"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(generated, ops, "build/backend-node is stale: run `bash tools/fixtures.sh`");

    let mut per_op: BTreeMap<String, Counts> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut refusals = Vec::new();
    let cases = index["cases"].as_array().unwrap();
    for case in cases {
        let name = case.as_str().unwrap();
        let dir = root.join(name);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let op = meta["op"].as_str().unwrap().to_string();
        let (rtol, atol) = (meta["rtol"].as_f64().unwrap(), meta["atol"].as_f64().unwrap());
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(&dir, rtol, atol)))
            .unwrap_or_else(|p| Outcome::Wrong(format!("panicked: {:?}", p.downcast_ref::<String>())));
        let counts = per_op.entry(op).or_default();
        let expected = listed(&REFUSED.iter().collect::<Vec<_>>(), name);
        match (&outcome, expected) {
            (Outcome::Pass, None) => counts.pass += 1,
            (Outcome::Refused(stage, msg), Some(text)) if msg.contains(text) && !msg.contains('\n') => {
                counts.refused += 1;
                refusals.push(format!("{name} ({stage}): {msg}"));
            }
            (Outcome::Wrong(why), _) => {
                counts.wrong += 1;
                failures.push(format!("{name}: WRONG RESULT: {why}"));
            }
            (Outcome::Pass, Some(_)) => {
                counts.unlisted += 1;
                failures.push(format!("{name}: passes, but is listed as refused: unlist it"));
            }
            (Outcome::Refused(stage, msg), None) => {
                counts.unlisted += 1;
                failures.push(format!("{name}: refused at {stage} but not listed: {msg}"));
            }
            (Outcome::Refused(stage, msg), Some(text)) => {
                counts.unlisted += 1;
                failures.push(format!("{name}: refused at {stage} with {msg:?}, listed as refused with {text:?}"));
            }
        }
    }

    let row = |op: &str, c: &Counts| {
        let n = c.pass + c.refused + c.wrong + c.unlisted;
        println!("{op:<20} {n:>5} {:>5} {:>8} {:>6} {:>9}", c.pass, c.refused, c.wrong, c.unlisted);
    };
    println!("{:<20} {:>5} {:>5} {:>8} {:>6} {:>9}", "op", "cases", "pass", "refused", "wrong", "unlisted");
    let mut total = Counts::default();
    for (op, c) in &per_op {
        row(op, c);
        total.pass += c.pass;
        total.refused += c.refused;
        total.wrong += c.wrong;
        total.unlisted += c.unlisted;
    }
    row("total", &total);
    // Every supported op has cases (onnx 1.23.2 has at least one for each): none was skipped.
    let untested: Vec<&String> = ops.iter().filter(|op| !per_op.contains_key(*op)).collect();
    assert!(untested.is_empty(), "no backend node case ran for {untested:?}");
    println!("\nrefusals:\n  {}", refusals.join("\n  "));
    assert!(failures.is_empty(), "{} backend node case(s) fail:\n  {}", failures.len(), failures.join("\n  "));
}
