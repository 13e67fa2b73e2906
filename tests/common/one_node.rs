//! One-node models for the per-op checks (tests/backward_fd.rs, tests/cuda.rs): every float
//! input a trainable initializer with distinct values, BatchNorm statistics and integer inputs
//! as fixed initializers, the output `y` the graph's only output.

use super::build::{floats, model, node, value};
use super::ints_init;
use edgetune::autodiff::BnMode;
use edgetune::graph::Graph;
use tract_onnx::pb;

/// Distinct values k·0.1 + 0.05 (k = −n/2 .. n/2) in a seeded shuffled order: every value is
/// 0.05 away from 0 and from any multiple of 0.1 (Clip bounds below), and any two differ by ≥ 0.1,
/// so no window has a near-tie.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (i as u64 ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 17);
    order.iter().map(|&k| (k as f32 - (n / 2) as f32) * 0.1 + 0.05).collect()
}

pub struct Case {
    pub op: &'static str,
    pub attrs: Vec<pb::AttributeProto>,
    /// Float inputs (trainable): shape and values.
    pub inputs: Vec<Vec<usize>>,
    /// Integer inputs after the float ones, in input order (`None` leaves a slot empty).
    pub ints: Vec<Option<Vec<i64>>>,
    pub bn: BnMode,
    /// Non-trainable float inputs (BatchNorm running statistics), appended after `inputs`.
    pub fixed: Vec<Vec<f32>>,
    /// The model's opset (17 unless a case needs a form from another one).
    pub opset: i64,
}

impl Case {
    pub fn new(op: &'static str, inputs: Vec<Vec<usize>>) -> Case {
        Case { op, attrs: vec![], inputs, ints: vec![], bn: BnMode::Train, fixed: vec![], opset: 17 }
    }
    pub fn attrs(mut self, a: Vec<pb::AttributeProto>) -> Case {
        self.attrs = a;
        self
    }
    pub fn ints(mut self, i: Vec<Option<Vec<i64>>>) -> Case {
        self.ints = i;
        self
    }
    pub fn opset(mut self, v: i64) -> Case {
        self.opset = v;
        self
    }
}

impl Case {
    /// The case as a loaded graph (and the folder holding its file).
    pub fn graph(&self) -> (Graph, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut inits = Vec::new();
        let mut names = Vec::new();
        for (k, shape) in self.inputs.iter().enumerate() {
            let n: usize = shape.iter().product();
            let name = format!("in{k}");
            let mut v = values(n, k as u64 + 1);
            if self.op == "Div" && k == 1 {
                v.iter_mut().for_each(|x| *x = x.abs() + 0.5); // keep the divisor away from 0
            }
            inits.push(floats(&name, &shape.iter().map(|&d| d as i64).collect::<Vec<_>>(), &v));
            names.push(name);
        }
        for (k, f) in self.fixed.iter().enumerate() {
            let name = format!("fixed{k}");
            inits.push(floats(&name, &[f.len() as i64], f));
            names.push(name);
        }
        for (k, i) in self.ints.iter().enumerate() {
            match i {
                Some(v) => {
                    let name = format!("int{k}");
                    inits.push(ints_init(&name, v));
                    names.push(name);
                }
                None => names.push(String::new()),
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut n = node(self.op, "n", &refs, &["y"]);
        n.attribute = self.attrs.clone();
        let mut m = model(vec![n], inits, vec![], vec![value("y", &[])]);
        m.opset_import[0].version = self.opset;
        let path = dir.path().join("m.onnx");
        super::build::save(&m, &path);
        (edgetune::onnx::load(&path).unwrap().graph, dir)
    }
}

/// Gemm in the forms exports use (transposes, alpha and beta, C broadcast as [n], [m, n] and
/// [m, 1], or no C): the finite-difference checks and the GPU op checks run the same cases.
pub fn gemm_cases() -> Vec<(&'static str, Case)> {
    use super::attr;
    vec![
        (
            "gemm transA transB alpha beta, C [n]",
            Case::new("Gemm", vec![vec![4, 3], vec![5, 4], vec![5]]).attrs(vec![
                attr::int("transA", 1),
                attr::int("transB", 1),
                attr::float("alpha", 0.7),
                attr::float("beta", 1.3),
            ]),
        ),
        ("gemm plain, C [m, n]", Case::new("Gemm", vec![vec![3, 4], vec![4, 5], vec![3, 5]])),
        (
            "gemm transB, C [m, 1]",
            Case::new("Gemm", vec![vec![3, 4], vec![5, 4], vec![3, 1]]).attrs(vec![attr::int("transB", 1)]),
        ),
        ("gemm transA, no C", Case::new("Gemm", vec![vec![4, 3], vec![4, 5]]).attrs(vec![attr::int("transA", 1)])),
    ]
}
