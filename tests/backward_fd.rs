//! Every backward rule against central finite differences, on small shapes covering its
//! attributes. Each case is a one-node model whose float inputs are all trainable initializers;
//! the scalar checked is L = Σ y·r for a fixed pseudo-random r, so dL/dy = r seeds the walk.
//!
//! Tolerance: ‖g_fd − g‖ / ‖g‖ ≤ 1e-2 over all coordinates. With h = 1e-2 the truncation error of a
//! central difference is O(h²) ≈ 1e-4 relative for these smooth, O(1)-scaled functions, and f32
//! rounding of L (|L| ≲ 10, ε ≈ 6e-8) adds ≈ 3e-5 per coordinate. Inputs keep a distance ≥ 0.05 > h
//! from kinks (ReLU at 0, Clip bounds, ties in MaxPool), so no difference straddles one. A wrong rule
//! is off by O(1): `the_check_catches_a_rule_off_by_five_percent` shows the tolerance bites.

mod common;

use common::attr;
use common::one_node::{gemm_cases, values, Case};
use edgetune::autodiff::{BnMode, GradPlan};
use edgetune::train::select;
use edgetune::Tensor;
use tract_onnx::pb;

const H: f32 = 1e-2;
const TOL: f64 = 1e-2;

/// Worst relative error ‖fd − analytic‖/‖analytic‖ over the case's trainable tensors, with the
/// analytic gradient multiplied by `distort` (1.0 for the real check).
fn fd_error(case: &Case, distort: f32) -> f64 {
    let (graph, _dir) = case.graph();
    let trainable = select::trainable(&graph, "all").unwrap();
    let plan = GradPlan::build(&graph, &[], &trainable, case.bn, false).unwrap();

    let tape = plan.forward(vec![], &[]);
    let r: Vec<f32> = values(tape.logits.len(), 99).iter().map(|v| v * 0.5).collect();
    let seed = Tensor::from_vec(tape.logits.shape(), r.clone());
    let loss = |y: &Tensor| y.data().iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
    let grads = plan.backward(tape, seed).unwrap();

    let base: Vec<Tensor> = plan
        .params
        .iter()
        .map(|&v| {
            let init = graph.initializers.iter().find(|i| i.value == v).unwrap();
            match &init.data {
                edgetune::graph::Const::F32(t) => t.clone(),
                _ => unreachable!(),
            }
        })
        .collect();
    let mut worst = 0.0f64;
    for (k, &pv) in plan.params.iter().enumerate() {
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for j in 0..base[k].len() {
            let eval = |delta: f32| {
                let mut t = base[k].clone();
                t.data_mut()[j] += delta;
                loss(&plan.forward(vec![], &[(pv, t)]).logits)
            };
            let fd = (eval(H) - eval(-H)) / (2.0 * H as f64);
            let an = (grads[k].data()[j] * distort) as f64;
            num += (fd - an).powi(2);
            den += an.powi(2);
        }
        let err = num.sqrt() / den.sqrt().max(1e-6);
        worst = worst.max(err);
    }
    worst
}

fn check(name: &str, case: Case) {
    let err = fd_error(&case, 1.0);
    assert!(err <= TOL, "{name}: finite-difference relative error {err:.2e} > {TOL}");
    println!("{name}: {err:.1e}");
}

#[test]
fn conv_rules() {
    let a = |list: Vec<pb::AttributeProto>| list;
    check(
        "conv 3x3 pad 1 bias",
        Case::new("Conv", vec![vec![2, 2, 5, 5], vec![3, 2, 3, 3], vec![3]])
            .attrs(a(vec![attr::ints("pads", &[1, 1, 1, 1])])),
    );
    check(
        "conv groups 2 stride 2 dilation 2 asymmetric pads",
        Case::new("Conv", vec![vec![1, 4, 7, 6], vec![4, 2, 2, 3]]).attrs(a(vec![
            attr::int("group", 2),
            attr::ints("strides", &[2, 2]),
            attr::ints("dilations", &[2, 1]),
            attr::ints("pads", &[1, 0, 0, 2]),
        ])),
    );
    check("conv 1x1 pointwise", Case::new("Conv", vec![vec![2, 3, 4, 4], vec![5, 3, 1, 1], vec![5]]));
    check(
        "conv SAME_UPPER stride 2",
        Case::new("Conv", vec![vec![1, 2, 6, 5], vec![2, 2, 3, 3]])
            .attrs(a(vec![attr::string("auto_pad", "SAME_UPPER"), attr::ints("strides", &[2, 2])])),
    );
    // Depthwise layers run on their own kernel (kernels::depthwise).
    check(
        "depthwise 3x3 pad 1 bias",
        Case::new("Conv", vec![vec![2, 3, 6, 5], vec![3, 1, 3, 3], vec![3]])
            .attrs(a(vec![attr::int("group", 3), attr::ints("pads", &[1, 1, 1, 1])])),
    );
    check(
        "depthwise multiplier 2 stride 2 dilation 2 asymmetric pads",
        Case::new("Conv", vec![vec![1, 2, 8, 7], vec![4, 1, 3, 3]]).attrs(a(vec![
            attr::int("group", 2),
            attr::ints("strides", &[2, 2]),
            attr::ints("dilations", &[1, 2]),
            attr::ints("pads", &[2, 1, 0, 2]),
        ])),
    );
}

#[test]
fn batchnorm_rules() {
    let stats = vec![vec![0.1, -0.2, 0.3], vec![0.8, 1.2, 0.6]];
    for (mode, name) in [(BnMode::Train, "batchnorm train"), (BnMode::Frozen, "batchnorm frozen")] {
        let mut c = Case::new("BatchNormalization", vec![vec![2, 3, 3, 3], vec![3], vec![3]])
            .attrs(vec![attr::float("epsilon", 1e-3)]);
        c.bn = mode;
        c.fixed = stats.clone();
        check(name, c);
    }
}

#[test]
fn elementwise_rules() {
    check("relu", Case::new("Relu", vec![vec![3, 7]]));
    let mut clip = Case::new("Clip", vec![vec![4, 6]]);
    clip.fixed = vec![vec![-0.4], vec![0.4]];
    // Clip bounds are constant float inputs; the fixed ones are scalars shaped [1]: fine for Clip.
    check("clip", clip);
    for op in ["Add", "Sub", "Mul", "Div"] {
        check(&format!("{op} broadcast"), Case::new(op, vec![vec![2, 3, 4], vec![3, 1]]));
        check(&format!("{op} broadcast first"), Case::new(op, vec![vec![4], vec![2, 3, 4]]));
    }
    check("sum of three", Case::new("Sum", vec![vec![2, 3], vec![3], vec![2, 3]]));
    check("identity", Case::new("Identity", vec![vec![5]]));
}

/// 80 inputs span ±3.95 in steps of 0.1 (`values`): past HardSwish's and HardSigmoid's kinks at
/// ±3 (±2.5 for the ONNX defaults α = 0.2, β = 0.5) on both sides, 0.05 away from each.
#[test]
fn activation_rules() {
    let wide = || vec![vec![8, 10]];
    check("sigmoid", Case::new("Sigmoid", wide()));
    check("tanh", Case::new("Tanh", wide()));
    check("hardswish", Case::new("HardSwish", wide()).opset(14));
    check("hardsigmoid defaults", Case::new("HardSigmoid", wide()));
    check(
        "hardsigmoid torch",
        Case::new("HardSigmoid", wide()).attrs(vec![attr::float("alpha", 1.0 / 6.0), attr::float("beta", 0.5)]),
    );
}

#[test]
fn pooling_and_reduction_rules() {
    let pool = |extra: Vec<pb::AttributeProto>| {
        let mut a = vec![
            attr::ints("kernel_shape", &[3, 3]),
            attr::ints("strides", &[2, 2]),
            attr::ints("pads", &[1, 1, 1, 1]),
        ];
        a.extend(extra);
        a
    };
    check("maxpool 3x3 s2 p1", Case::new("MaxPool", vec![vec![1, 2, 7, 6]]).attrs(pool(vec![])));
    check(
        "maxpool ceil_mode",
        Case::new("MaxPool", vec![vec![1, 2, 6, 6]]).attrs(pool(vec![attr::int("ceil_mode", 1)])),
    );
    check("avgpool exclude pad", Case::new("AveragePool", vec![vec![2, 2, 5, 6]]).attrs(pool(vec![])));
    check(
        "avgpool include pad",
        Case::new("AveragePool", vec![vec![2, 2, 5, 6]]).attrs(pool(vec![attr::int("count_include_pad", 1)])),
    );
    check("global average pool", Case::new("GlobalAveragePool", vec![vec![2, 3, 4, 5]]));
    check(
        "reducemean hw keepdims",
        Case::new("ReduceMean", vec![vec![2, 3, 4, 5]]).attrs(vec![attr::ints("axes", &[2, 3])]),
    );
    check(
        "reducemean channel no keepdims",
        Case::new("ReduceMean", vec![vec![2, 3, 4]]).attrs(vec![attr::ints("axes", &[1]), attr::int("keepdims", 0)]),
    );
    check("softmax axis 1", Case::new("Softmax", vec![vec![3, 5]]).attrs(vec![attr::int("axis", 1)]));
    check("softmax axis -1 on 3-D", Case::new("Softmax", vec![vec![2, 3, 4]]).attrs(vec![attr::int("axis", 1)]));
}

#[test]
fn linear_rules() {
    for (name, case) in gemm_cases() {
        check(name, case);
    }
    check("matmul batched x 2-D", Case::new("MatMul", vec![vec![2, 3, 4], vec![4, 5]]));
    check("matmul matrix x vector", Case::new("MatMul", vec![vec![3, 4], vec![4]]));
}

#[test]
fn movement_rules() {
    check("flatten", Case::new("Flatten", vec![vec![2, 3, 2]]).attrs(vec![attr::int("axis", 2)]));
    check("reshape", Case::new("Reshape", vec![vec![2, 3, 4]]).ints(vec![Some(vec![4, -1])]));
    check("transpose", Case::new("Transpose", vec![vec![2, 3, 4]]).attrs(vec![attr::ints("perm", &[2, 0, 1])]));
    check("squeeze", Case::new("Squeeze", vec![vec![2, 1, 3]]).ints(vec![Some(vec![1])]));
    check("unsqueeze", Case::new("Unsqueeze", vec![vec![2, 3]]).ints(vec![Some(vec![0, 3])]));
    check("concat axis 1", Case::new("Concat", vec![vec![2, 3, 2], vec![2, 1, 2]]).attrs(vec![attr::int("axis", 1)]));
    check(
        "slice with steps",
        Case::new("Slice", vec![vec![3, 8, 5]]).ints(vec![
            Some(vec![0, 1, 4]),
            Some(vec![3, 8, 0]),
            Some(vec![0, 1, 2]),
            Some(vec![2, 3, -2]),
        ]),
    );
}

/// Pad in every mode: the backward rule scatter-adds each output's gradient into the input it was
/// read from, so border inputs that edge, reflect and wrap read several times collect several terms.
#[test]
fn pad_rules() {
    let pad = |mode: &str, shape: Vec<usize>, pads: Vec<i64>| {
        Case::new("Pad", vec![shape]).attrs(vec![attr::string("mode", mode)]).ints(vec![Some(pads)])
    };
    check("pad constant", Case::new("Pad", vec![vec![1, 2, 3, 3]]).ints(vec![Some(vec![0, 0, 1, 2, 0, 0, 2, 1])]));
    // Edge: a pad of 2 on an axis of 3 gives the border element three terms.
    check("pad edge", pad("edge", vec![1, 2, 3, 4], vec![0, 0, 2, 1, 0, 0, 1, 3]));
    // Reflect up to its limit (length − 1) on both sides.
    check("pad reflect", pad("reflect", vec![1, 2, 3, 4], vec![0, 0, 2, 1, 0, 0, 2, 3]));
    // Wrap by more than the axis length: some inputs are read three times.
    check("pad wrap", pad("wrap", vec![1, 2, 3, 2], vec![0, 0, 4, 1, 0, 0, 2, 5]).opset(19));
    // Negative pads crop first (onnxruntime's rule), then the mode pads the cropped axis.
    check("pad edge with a crop", pad("edge", vec![1, 2, 4, 4], vec![0, 0, -1, 2, 0, 0, 2, -1]));
    check("pad reflect with a crop", pad("reflect", vec![1, 2, 5, 4], vec![0, -1, 3, 0, 0, 0, -1, 2]));
    // Pads as attributes (before opset 11) and on named axes (opset 18).
    check(
        "pad reflect, opset 10 attributes",
        Case::new("Pad", vec![vec![2, 3, 4]])
            .attrs(vec![attr::string("mode", "reflect"), attr::ints("pads", &[0, 1, 3, 0, 2, 1])])
            .opset(10),
    );
    check(
        "pad edge on axes (-1, 1)",
        Case::new("Pad", vec![vec![2, 3, 4]])
            .attrs(vec![attr::string("mode", "edge")])
            .ints(vec![Some(vec![2, 0, 1, 2]), None, Some(vec![-1, 1])])
            .opset(18),
    );
}

#[test]
fn the_check_catches_a_rule_off_by_five_percent() {
    // The same Mul case as above, with its analytic gradient scaled by 1.05: the check must fail.
    let err = fd_error(&Case::new("Mul", vec![vec![2, 3, 4], vec![3, 1]]), 1.05);
    assert!(err > TOL, "a 5% error went unnoticed ({err:.2e})");
}
