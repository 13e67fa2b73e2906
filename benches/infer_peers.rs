//! Inference latency of edgetune against tract, in one process, on the same input.
//!
//! `cargo bench --bench infer_peers -- MODEL BATCH [HxW] [ITERS]`
//!
//! Both engines load MODEL, run 2 untimed warm-up batches, then ITERS (default 10) timed runs
//! each, each engine's runs in one block (as onnxruntime's are in tools/bench_infer.py).
//! The input is deterministic (a fixed LCG in [-1, 1)), NCHW `[B, 3, H, W]`, or NHWC
//! `[B, H, W, 3]` when the model's first input is declared NHWC. HxW defaults to the declared
//! spatial size, else 224x224.
//!
//! Prints one JSON line per engine: `engine`, `model`, `batch`, `size`, `threads`, `median_ms`,
//! `min_ms` (and `iters`, `img_per_s`, `load_ms`; the edgetune line also carries
//! `rel_err_vs_tract`, max |edgetune - tract| / max |tract| on the first output, as a sanity check).
//!
//! Threads: edgetune uses its default pool (`Session::new(graph, 0)`: one worker per core).
//! tract 0.23.9 only parallelises when tract-linalg's `multithread-mm` feature is on and an
//! executor is installed; this crate does not enable that feature, so tract runs on one thread
//! (the `tract_executor` field shows the executor tract reports at run time).

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgetune::graph::Dim;
use edgetune::{Session, Tensor};
use serde_json::json;
use tract_onnx::prelude::{tvec, DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue, TValue};

const WARMUP: usize = 2;

struct Args {
    model: PathBuf,
    batch: usize,
    size: Option<[usize; 2]>,
    iters: usize,
}

fn usage() -> ! {
    eprintln!("usage: cargo bench --bench infer_peers -- MODEL BATCH [HxW] [ITERS]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    // `cargo bench` appends `--bench`: skip flags.
    let pos: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if pos.len() < 2 || pos.len() > 4 {
        usage();
    }
    let batch = pos[1].parse().unwrap_or_else(|_| usage());
    let (mut size, mut iters) = (None, 10);
    for a in &pos[2..] {
        if let Some((h, w)) = a.split_once(['x', 'X']) {
            size = Some([h.parse().unwrap_or_else(|_| usage()), w.parse().unwrap_or_else(|_| usage())]);
        } else {
            iters = a.parse().unwrap_or_else(|_| usage());
        }
    }
    Args { model: PathBuf::from(&pos[0]), batch, size, iters: iters.max(1) }
}

/// Deterministic pseudo-random data in [-1, 1) (the same sequence as `edgetune bench infer`).
fn lcg_data(n: usize) -> Vec<f32> {
    edgetune::tensor::lcg_values(n, 12345)
}

/// The input shape, whether it is NHWC (as the declared first input is) and its HxW.
fn input_shape(session: &Session, batch: usize, size: Option<[usize; 2]>) -> (Vec<usize>, bool, [usize; 2]) {
    let dims = session.graph().inputs[0].1.dims.clone().unwrap_or_default();
    let fixed = |i: usize| match dims.get(i) {
        Some(Dim::Fixed(n)) => Some(*n),
        _ => None,
    };
    let nhwc = edgetune::exec::channel_axis(&dims) == Some(3);
    let (c_axis, h_axis, w_axis) = if nhwc { (3, 1, 2) } else { (1, 2, 3) };
    let c = fixed(c_axis).unwrap_or(3);
    let [h, w] = size.unwrap_or(match (fixed(h_axis), fixed(w_axis)) {
        (Some(h), Some(w)) => [h, w],
        _ => [224, 224],
    });
    let shape = if nhwc { vec![batch, h, w, c] } else { vec![batch, c, h, w] };
    (shape, nhwc, [h, w])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("error: {what}: {e}");
    std::process::exit(1);
}

type TractPlan = std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>;

fn load_tract(model: &Path, shape: &[usize]) -> tract_onnx::prelude::TractResult<TractPlan> {
    tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true)
        .model_for_path(model)?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()
}

fn main() {
    let a = parse_args();

    let t = Instant::now();
    let model = edgetune::onnx::load(&a.model).unwrap_or_else(|e| die("edgetune load", e));
    let session = Session::new(model.graph, 0).unwrap_or_else(|e| die("edgetune session", e));
    let et_load_ms = ms_since(t);

    let (shape, nhwc, size) = input_shape(&session, a.batch, a.size);
    let data = lcg_data(shape.iter().product());
    let x = Tensor::from_vec(shape.clone(), data.clone());

    let t = Instant::now();
    let tract = load_tract(&a.model, &shape);
    let tract_load_ms = ms_since(t);
    let tract = match tract {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("tract cannot load {}: {e:?}", a.model.display());
            None
        }
    };
    let tx = tract_onnx::prelude::Tensor::from_shape(&shape, &data).unwrap_or_else(|e| die("tract input", e));
    let executor = format!("{:?}", tract_onnx::prelude::multithread::current_tract_executor());
    let tract_threads = if executor == "SingleThread" { 1 } else { 0 };

    let run_et = |x: Vec<Tensor>| -> Vec<Tensor> { session.run(x).unwrap_or_else(|e| die("edgetune run", e)) };
    let run_tract = |p: &TractPlan, x: TValue| p.run(tvec!(x)).unwrap_or_else(|e| die("tract run", e));

    // Warm-up (and a sanity check that both engines compute the same thing).
    let mut rel_err = None;
    for i in 0..WARMUP {
        let et_out = run_et(vec![x.clone()]);
        if let Some(p) = &tract {
            let tr_out = run_tract(p, tx.clone().into_tvalue());
            if i == 0 {
                let view = tr_out[0].to_plain_array_view::<f32>().unwrap_or_else(|e| die("tract output", e));
                let want: Vec<f32> = view.iter().copied().collect();
                let got = et_out[0].data();
                if got.len() == want.len() {
                    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
                    let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    rel_err = Some(diff / scale);
                } else {
                    eprintln!("warning: output sizes differ: edgetune {} vs tract {}", got.len(), want.len());
                }
            }
        }
    }

    // Each engine's runs in one block, as onnxruntime's are in tools/bench_infer.py: runs of
    // another engine in between would evict this one's weights and activations from the caches.
    let mut et_times = Vec::new();
    for _ in 0..a.iters {
        let input = vec![x.clone()];
        let t = Instant::now();
        let out = run_et(input);
        et_times.push(ms_since(t));
        drop(out);
    }
    let mut tr_times = Vec::new();
    if let Some(p) = &tract {
        for _ in 0..a.iters {
            let input = tx.clone().into_tvalue();
            let t = Instant::now();
            let out = run_tract(p, input);
            tr_times.push(ms_since(t));
            drop(out);
        }
    }

    let model_name = a.model.display().to_string();
    let line = |engine: &str, threads: usize, times: &[f64], load_ms: f64| {
        let med = median(times.to_vec());
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        json!({"engine": engine, "model": model_name, "batch": a.batch, "size": size,
               "layout": if nhwc { "NHWC" } else { "NCHW" }, "threads": threads,
               "iters": times.len(), "median_ms": med, "min_ms": min,
               "img_per_s": a.batch as f64 / (med / 1e3), "load_ms": load_ms})
    };
    let mut et = line("edgetune", session.threads(), &et_times, et_load_ms);
    et["rel_err_vs_tract"] = json!(rel_err);
    et["kernel"] = json!(edgetune::kernels::micro::active().name);
    println!("{et}");
    if tract.is_some() {
        let mut tr = line("tract", tract_threads, &tr_times, tract_load_ms);
        tr["tract_executor"] = json!(executor);
        println!("{tr}");
    } else {
        println!(
            "{}",
            json!({"engine": "tract", "model": model_name, "batch": a.batch, "size": size,
                   "error": "tract failed to load the model (see stderr)"})
        );
    }
}
