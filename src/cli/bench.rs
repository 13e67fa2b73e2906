//! `edgetune bench`: throughput figures, human-readable or one JSON object per line.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::json;

use super::input::{image_input, parse_size};
use super::progress;
use crate::autodiff::{BnMode, GradPlan};
use crate::data::image::Layout;
use crate::device::{Device, Runner};
use crate::error::Result;
use crate::kernels::micro;
use crate::tensor::{lcg_values, Tensor};
use crate::timing::{median, time_ms, time_pair_ms};
use crate::train::optim::{OptimizerName, Rule};
use crate::train::trainer::{TrainConfig, Trainer};
use crate::train::transform::GradNorm;
use crate::train::{loss, select};
use crate::values;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Inference latency and throughput of one batch.
    Infer(InferBench),
    /// One gradient step (forward in record mode, loss, backward) on a random batch: time and
    /// the process's peak resident memory.
    Grad(GradBench),
    /// One full training step (forward, backward, gradient transform, optimizer) on a random
    /// batch: median_step_ms, img_per_s, peak_rss_mib.
    Train(GradBench),
    /// ZNorm over a model's parameter shapes (or N values), beside a plain read-and-write sweep
    /// of the same buffers (the memory floor), and ZNorm fused with an Adam step.
    Znorm(ZnormBench),
}

#[derive(Args, Debug)]
pub struct ZnormBench {
    /// Use this model's float initializers' shapes.
    #[arg(long, conflicts_with = "params", required_unless_present = "params")]
    pub model: Option<PathBuf>,
    /// One tensor of this many values.
    #[arg(long)]
    pub params: Option<usize>,
    /// Timed repetitions (medians are reported).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// --threads sets the multi-threaded figures; the 1-thread figures always run.
    #[command(flatten)]
    pub out: RunOpts,
}

#[derive(Args, Debug)]
pub struct GradBench {
    /// The ONNX model.
    pub model: PathBuf,
    /// Images per step (random inputs and labels).
    #[arg(long, default_value_t = 32, value_parser = values::count)]
    pub batch: usize,
    /// Input size HxW (default: the model's declared size, else 224x224).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<[usize; 2]>,
    /// BatchNorm: train, frozen or auto (as finetune --bn).
    #[arg(long, value_enum, default_value = "auto")]
    pub bn: BnMode,
    /// Which initializers train: all, head or a regex.
    #[arg(long, default_value = "all", value_parser = crate::train::select::parse_spec)]
    pub train: String,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// `bench train`: the optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerName,
    /// `bench train`: the learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// `bench train`: the gradient transform (none, znorm, gc, clip:MAXNORM).
    #[arg(long, default_value = "znorm")]
    pub grad_norm: GradNorm,
    #[command(flatten)]
    pub out: RunOpts,
}

/// Options every timed benchmark shares.
#[derive(Args, Debug)]
pub struct RunOpts {
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Where to run: cpu, or cuda (a build with `--features cuda` and an NVIDIA GPU). `bench
    /// znorm` adds the GPU's rows to the CPU's.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

#[derive(Args, Debug)]
pub struct InferBench {
    /// The ONNX model.
    pub model: PathBuf,
    /// Inputs per run (random values).
    #[arg(long, default_value_t = 1, value_parser = values::count)]
    pub batch: usize,
    /// Input size HxW (default: the model's declared size, else 224x224).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<[usize; 2]>,
    /// Timed iterations (after 2 untimed warm-up runs).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    #[command(flatten)]
    pub out: RunOpts,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    let opts = match &cmd {
        BenchCommand::Infer(b) => &b.out,
        BenchCommand::Grad(b) | BenchCommand::Train(b) => &b.out,
        BenchCommand::Znorm(b) => &b.out,
    };
    crate::device::check(opts.device)?;
    match cmd {
        BenchCommand::Infer(b) => infer(b),
        BenchCommand::Grad(b) => grad(b, false),
        BenchCommand::Train(b) => grad(b, true),
        BenchCommand::Znorm(b) => znorm(b),
    }
}

/// Deterministic pseudo-random input in [-1, 1).
fn input(shape: Vec<usize>) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, lcg_values(n, 12345))
}

/// The input shape for a batch of `batch` images of `size` (or the model's default).
fn batch_shape(
    graph: &crate::graph::Graph,
    batch: usize,
    size: Option<[usize; 2]>,
) -> Result<(Vec<usize>, [usize; 2])> {
    let info = image_input(graph)?;
    let [h, w] = size.unwrap_or(info.size);
    let shape = match info.layout {
        Layout::Nchw => vec![batch, info.channels, h, w],
        Layout::Nhwc => vec![batch, h, w, info.channels],
    };
    Ok((shape, [h, w]))
}

/// Peak resident set size of this process so far (VmHWM), in MiB; `None` off Linux.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `bench grad` (forward + backward) or, with `full`, `bench train` (the whole training step).
fn grad(b: GradBench, full: bool) -> Result<()> {
    let model = crate::onnx::load(&b.model)?;
    let graph = &model.graph;
    let (shape, [h, w]) = batch_shape(graph, b.batch, b.size)?;
    let trainable = select::trainable(graph, &b.train)?;
    let pool = super::thread_pool(b.out.threads)?;
    let x = input(shape.clone());
    // `bench grad` runs the gradient plan alone; `bench train` the trainer (which plans its own).
    enum Stepper {
        Grad(Box<GradPlan>),
        Train(Box<Trainer>),
        #[cfg(feature = "cuda")]
        GpuGrad(Box<crate::gpu::GradSession>),
    }
    let mut stepper = if full {
        let rule = Rule::new(b.optimizer, b.lr, 0.9, 0.0, false);
        let cfg = TrainConfig { train: b.train.clone(), bn: b.bn, norm: b.grad_norm, rule };
        let mut trainer = Trainer::new(graph.clone(), cfg)?;
        trainer.set_device(b.out.device)?;
        Stepper::Train(Box::new(trainer))
    } else if b.out.device == Device::Cuda {
        #[cfg(feature = "cuda")]
        {
            Stepper::GpuGrad(Box::new(crate::gpu::GradSession::new(graph, &shape, &trainable, b.bn)?))
        }
        #[cfg(not(feature = "cuda"))]
        unreachable!("`device::check` refuses CUDA in a build without it")
    } else {
        Stepper::Grad(Box::new(GradPlan::new(graph, std::slice::from_ref(&shape), &trainable, b.bn)?))
    };
    let logits = match &mut stepper {
        Stepper::Grad(p) => p.logits_shape().to_vec(),
        Stepper::Train(t) => t.logits_shape(&shape)?,
        #[cfg(feature = "cuda")]
        Stepper::GpuGrad(s) => s.logits_shape().to_vec(),
    };
    let classes = *logits.last().unwrap_or(&1);
    let labels: Vec<i64> = (0..b.batch as i64).map(|i| (i * 7919) % classes as i64).collect();
    let mut step = || -> Result<f32> {
        match &mut stepper {
            Stepper::Train(t) => Ok(t.step(x.clone(), &labels, b.lr)?.loss),
            Stepper::Grad(p) => {
                let tape = p.forward(vec![x.clone()], &[]);
                let (l, dlogits) = loss::softmax_cross_entropy(&tape.logits, &labels)?;
                p.backward(tape, dlogits)?;
                Ok(l)
            }
            #[cfg(feature = "cuda")]
            Stepper::GpuGrad(s) => {
                let (l, _) = s.run(&x, &labels)?;
                s.sync()?;
                Ok(l)
            }
        }
    };
    let what = if full { "train" } else { "grad" };
    pool.install(&mut step)?;
    let pb = progress::bar(b.iters as u64, &format!("bench {what}"), b.out.quiet || b.out.json);
    let mut times = Vec::new();
    for _ in 0..b.iters.max(1) {
        let t = Instant::now();
        pool.install(&mut step)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let med = median(times.clone());
    let ips = b.batch as f64 / (med / 1e3);
    let rss = peak_rss_mib();
    let on = match &stepper {
        Stepper::Train(t) => t.device_name(),
        Stepper::Grad(_) => None,
        #[cfg(feature = "cuda")]
        Stepper::GpuGrad(s) => Some(s.name()),
    }
    .unwrap_or_else(|| crate::device::describe_cpu(pool.current_num_threads()));
    if b.out.json {
        say!(
            "{}",
            json!({"bench": what, "model": b.model.display().to_string(), "batch": b.batch, "size": [h, w],
                   "threads": pool.current_num_threads(), "device": b.out.device.name(), "on": on,
                   "bn": format!("{:?}", b.bn).to_lowercase(), "kernel": micro::active().name, "iters": times.len(),
                   "median_step_ms": med, "img_per_s": ips, "peak_rss_mib": rss})
        );
    } else {
        say!(
            "{what} {} batch {} at {h}x{w}, {on}: median step {med:.1} ms, {ips:.1} img/s, peak RSS {:.0} MiB",
            b.model.display(),
            b.batch,
            rss.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn znorm(b: ZnormBench) -> Result<()> {
    use crate::train::optim::Optimizer;
    use crate::train::transform::{self, GradNorm};
    use rayon::prelude::*;

    let sizes: Vec<usize> = match (&b.model, b.params) {
        (Some(m), _) => crate::onnx::load(m)?
            .graph
            .initializers
            .iter()
            .filter_map(|i| match &i.data {
                crate::graph::Const::F32(t) => Some(t.len()),
                crate::graph::Const::I64(_) => None,
            })
            .collect(),
        (None, Some(n)) => vec![n],
        (None, None) => unreachable!("clap requires one"),
    };
    let total: usize = sizes.iter().sum();
    let fill = |seed: u32| -> Vec<Vec<f32>> {
        sizes.iter().enumerate().map(|(i, &n)| lcg_values(n, seed + i as u32)).collect()
    };
    let label = b.model.as_ref().map_or(format!("{total} values"), |m| m.display().to_string());
    let all = super::thread_pool(b.out.threads)?;
    let one = super::thread_pool(1)?;
    let mut rows = Vec::new();
    for pool in [&one, &all] {
        let threads = pool.current_num_threads();
        let (mut bufs, mut g) = (fill(1), fill(2));
        // The floor, one read and one write of every value (x ← x·1 + 0, the same SIMD sweep),
        // timed alternately with the SIMD ZNorm so that both see the same machine.
        let (floor, simd_ms) = pool.install(|| {
            time_pair_ms(
                b.iters,
                || {
                    bufs.par_iter_mut().for_each(|g| {
                        g.par_chunks_mut(1 << 16).for_each(|c| crate::kernels::simd::affine_inplace(c, 1.0, 0.0, false))
                    });
                    Ok(())
                },
                || {
                    transform::znorm_inplace(&mut g, 1e-8, true);
                    Ok(())
                },
            )
        })?;
        let scalar = || {
            transform::znorm_inplace(&mut g, 1e-8, false);
            Ok(())
        };
        let scalar_ms = pool.install(|| time_ms(b.iters, scalar))?;
        for (variant, ms) in [("simd", simd_ms), ("scalar", scalar_ms)] {
            // ZNorm reads every value twice (statistics, then the sweep) and writes it once.
            rows.push(json!({"bench": "znorm", "variant": variant, "what": label, "params": total, "threads": threads,
                "median_ms": ms, "gbps": 12.0 * total as f64 / ms / 1e6, "floor_ms": floor, "floor_gbps": 8.0 * total as f64 / floor / 1e6,
                "ratio_to_floor": ms / floor}));
        }
        // ZNorm fused into Adam: statistics pass, then one sweep reading g, p, m, v, writing p, m, v.
        let grads: Vec<Tensor> = fill(3).into_iter().zip(&sizes).map(|(v, &n)| Tensor::from_vec([n], v)).collect();
        let mut params: Vec<Tensor> = fill(4).into_iter().zip(&sizes).map(|(v, &n)| Tensor::from_vec([n], v)).collect();
        let mut opt = Optimizer::new(Rule::new(OptimizerName::Adam, 1e-3, 0.0, 0.0, false), &sizes);
        let norm = GradNorm::ZNorm { eps: 1e-8, matrices_only: false };
        let ms = pool.install(|| {
            time_ms(b.iters, || {
                let affs = transform::plan(norm, &grads);
                opt.step(&mut params, &grads, &affs, 1e-3);
                Ok(())
            })
        })?;
        rows.push(json!({"bench": "znorm+adam", "what": label, "params": total, "threads": threads, "median_ms": ms,
            "gbps": 32.0 * total as f64 / ms / 1e6, "floor_ms": floor}));
    }
    if b.out.device == Device::Cuda {
        let t = crate::device::znorm_bench_cuda(&sizes, b.iters)?;
        let row = |bench: &str, variant: &str, ms: f64, bytes: f64| {
            json!({"bench": bench, "variant": variant, "what": label, "params": total, "device": "cuda", "gpu": t.gpu,
                "median_ms": ms, "gbps": bytes * total as f64 / ms / 1e6, "floor_ms": t.floor_ms, "ratio_to_floor": ms / t.floor_ms})
        };
        rows.push(row("znorm", "cuda", t.znorm_ms, 12.0));
        rows.push(row("znorm+adam", "cuda", t.znorm_adam_ms, 32.0));
    }
    for r in rows {
        if b.out.json {
            say!("{r}");
        } else {
            say!(
                "{:<10} {:<6} {}: {:.2} ms, {:.1} GB/s (floor {:.2} ms)",
                r["bench"].as_str().unwrap_or(""),
                r["variant"].as_str().unwrap_or(""),
                r["gpu"].as_str().map_or(format!("{} threads", r["threads"]), str::to_string),
                r["median_ms"].as_f64().unwrap_or(0.0),
                r["gbps"].as_f64().unwrap_or(0.0),
                r["floor_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

fn infer(b: InferBench) -> Result<()> {
    let t0 = Instant::now();
    let model = crate::onnx::load(&b.model)?;
    let mut runner = Runner::new(model.graph, b.out.device, b.out.threads)?;
    let (shape, [h, w]) = batch_shape(runner.graph(), b.batch, b.size)?;
    let x = input(shape);
    runner.run(vec![x.clone()])?;
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    runner.run(vec![x.clone()])?;
    let pb = progress::bar(b.iters as u64, "bench infer", b.out.quiet || b.out.json);
    let mut times = Vec::with_capacity(b.iters);
    for _ in 0..b.iters.max(1) {
        let t = Instant::now();
        runner.run(vec![x.clone()])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let med = median(times.clone());
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let ips = b.batch as f64 / (med / 1e3);
    let on = runner.describe();
    if b.out.json {
        say!(
            "{}",
            json!({"bench": "infer", "model": b.model.display().to_string(), "batch": b.batch, "size": [h, w],
                   "device": b.out.device.name(), "on": on, "kernel": micro::active().name, "iters": times.len(),
                   "median_ms": med, "min_ms": min,
                   "img_per_s": ips, "first_output_ms": first_ms})
        );
    } else {
        say!(
            "infer {} batch {} at {h}x{w}, {on}: median {med:.2} ms (min {min:.2}), {ips:.1} img/s; load to first output {first_ms:.0} ms",
            b.model.display(),
            b.batch,
        );
    }
    Ok(())
}
