//! Running a graph: `Session` owns the model's graph, a rayon pool of `--threads` workers and a
//! cache of plans per input shape (batch and spatial size may change between calls).

mod fuse;
pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::graph::{Dim, Graph};
use crate::tensor::Tensor;
pub use plan::Plan;

pub struct Session {
    graph: Arc<Graph>,
    pool: rayon::ThreadPool,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Arc<Plan>>>,
    /// Whether a plan that would not fit in memory is refused before it runs.
    check_memory: bool,
}

impl Session {
    /// A session on `threads` worker threads (0: one per core).
    pub fn new(graph: Graph, threads: usize) -> Result<Session> {
        let pool = thread_pool(threads)?;
        Ok(Session { graph: Arc::new(graph), pool, plans: Mutex::new(HashMap::new()), check_memory: true })
    }

    /// This session without the memory check before each new plan (for work already known to
    /// fit, such as checking a just-written model on a batch smaller than training's).
    pub fn without_memory_check(mut self) -> Session {
        self.check_memory = false;
        self
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The plan for these input shapes (built once, then cached).
    pub fn plan(&self, shapes: &[Vec<usize>]) -> Result<Arc<Plan>> {
        if let Some(p) = self.plans.lock().expect("plan cache").get(shapes) {
            return Ok(p.clone());
        }
        check_inputs(&self.graph, shapes)?;
        let mut p = plan::plan(&self.graph, shapes)?;
        fuse::fuse_for_inference(&mut p);
        if self.check_memory {
            crate::memory::check_fits(p.peak_bytes(|_| Vec::new()), || {
                format!("inference on inputs of shape {shapes:?}")
            })?;
        }
        let p = Arc::new(p);
        self.plans.lock().expect("plan cache").insert(shapes.to_vec(), p.clone());
        Ok(p)
    }

    /// Runs the model on `inputs` (one per graph input) and returns every graph output.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let plan = self.plan(&shapes)?;
        Ok(self.pool.install(|| execute(&plan, inputs)))
    }
}

/// Checks inputs against the declared ones: count, rank, and every fixed dim except the
/// batch (axis 0) and the spatial axes of an image (which only later nodes may constrain).
pub fn check_inputs(graph: &Graph, shapes: &[Vec<usize>]) -> Result<()> {
    let decl = &graph.inputs;
    if shapes.len() != decl.len() {
        return Err(Error::data("inputs", format!("the model takes {} input(s), got {}", decl.len(), shapes.len())));
    }
    for (shape, (_, d)) in shapes.iter().zip(decl) {
        let Some(dims) = &d.dims else { continue };
        let declared: Vec<String> = dims.iter().map(Dim::to_string).collect();
        let msg = || format!("shape {shape:?} does not fit the declared [{}]", declared.join(", "));
        let fits_without_batch = |d: &Dim, &n: &usize| !matches!(d, Dim::Fixed(m) if *m != n);
        if shape.len() + 1 == dims.len() && dims[1..].iter().zip(shape).all(|(d, n)| fits_without_batch(d, n)) {
            // One image where a batch of them belongs, the most common slip.
            let hint = format!("{} (no batch axis? a batch of one is [1, ...])", msg());
            return Err(Error::data(format!("input '{}'", d.name), hint));
        }
        if shape.len() != dims.len() {
            return Err(Error::data(format!("input '{}'", d.name), msg()));
        }
        if let Some(c) = channel_axis(dims) {
            if dims[c] != Dim::Fixed(shape[c]) {
                return Err(Error::data(format!("input '{}'", d.name), format!("{} (channel count)", msg())));
            }
        }
    }
    Ok(())
}

/// The channel axis of a declared image input: 1 for NCHW, 3 for NHWC (a fixed last dim of 1,
/// 3 or 4 with a free dim 1), if the input is rank 4.
pub fn channel_axis(dims: &[Dim]) -> Option<usize> {
    if dims.len() != 4 {
        return None;
    }
    let small = |d: &Dim| matches!(d, Dim::Fixed(1 | 3 | 4));
    if small(&dims[3]) && !small(&dims[1]) {
        Some(3)
    } else {
        matches!(dims[1], Dim::Fixed(_)).then_some(1)
    }
}

/// A rayon pool of `threads` workers (0: one per core) to run the kernels on. Refuses a kernel
/// pinned by `EDGETUNE_KERNEL` that is unknown or that this CPU cannot run.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    crate::kernels::micro::pinned().map_err(Error::Config)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the thread pool: {e}")))
}

/// The first graph input seen as an image batch.
pub struct ImageInput {
    pub layout: crate::data::image::Layout,
    pub channels: usize,
    /// Declared spatial size if fixed, else 224x224.
    pub size: [usize; 2],
}

/// The first input of `graph` as an image batch (rank 4 with a fixed channel count), or why not.
pub fn image_input(graph: &Graph) -> Result<ImageInput> {
    let (_, decl) = graph.inputs.first().ok_or_else(|| Error::Config("the model has no input".into()))?;
    let dims = decl.dims.as_deref().unwrap_or(&[]);
    let c = channel_axis(dims).ok_or_else(|| {
        Error::data(format!("input '{}'", decl.name), "is not an image batch (rank 4 with a fixed channel count)")
    })?;
    let Dim::Fixed(channels) = dims[c] else { unreachable!("channel_axis returns a fixed axis") };
    let layout = if c == 1 { crate::data::image::Layout::Nchw } else { crate::data::image::Layout::Nhwc };
    Ok(ImageInput { layout, channels, size: declared_size(dims).unwrap_or([224, 224]) })
}

/// The spatial axes (H, W) of a declared image input: [2, 3] for NCHW, [1, 2] for NHWC.
pub fn spatial_axes(dims: &[Dim]) -> Option<[usize; 2]> {
    channel_axis(dims).map(|c| if c == 1 { [2, 3] } else { [1, 2] })
}

/// The declared spatial size of an image input, when both sides are fixed.
pub fn declared_size(dims: &[Dim]) -> Option<[usize; 2]> {
    let [h, w] = spatial_axes(dims)?;
    match (&dims[h], &dims[w]) {
        (Dim::Fixed(h), Dim::Fixed(w)) if *h > 0 && *w > 0 => Some([*h, *w]),
        _ => None,
    }
}

/// A concrete shape for declared `dims` (to plan a model without data): fixed dims as declared,
/// a free batch (axis 0) as 1, free image sides as `size` (else 224), any other free dim as 1.
pub fn example_shape(dims: &[Dim], size: Option<[usize; 2]>) -> Vec<usize> {
    let hw = spatial_axes(dims);
    let side = |k: usize| hw.and_then(|a| a.iter().position(|&x| x == k)).map(|i| size.map_or(224, |s| s[i]));
    dims.iter()
        .enumerate()
        .map(|(k, d)| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbolic(_) if k == 0 => 1,
            Dim::Symbolic(_) => side(k).unwrap_or(1),
        })
        .collect()
}

/// Runs the steps in order, freeing each value right after its last reader.
pub fn execute(plan: &Plan, inputs: Vec<Tensor>) -> Vec<Tensor> {
    let mut values: Vec<Option<Tensor>> = vec![None; plan.n_values];
    for (v, t) in &plan.bound {
        values[*v] = Some(t.clone());
    }
    for (&v, t) in plan.inputs.iter().zip(inputs) {
        values[v] = Some(t);
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let t = StepTimer::start();
        let out = {
            let args: Vec<&Tensor> =
                step.inputs.iter().map(|&v| values[v].as_ref().expect("value computed before use")).collect();
            step.op.forward(&args, &step.out_shape)
        };
        t.report("infer", i, step);
        values[step.output] = Some(out);
        for &v in &plan.free_after[i] {
            values[v] = None;
        }
    }
    plan.outputs.iter().map(|&v| values[v].clone().expect("graph output computed")).collect()
}

/// `EDGETUNE_PROFILE=1` prints each step's time to stderr, one tab-separated line per step:
/// `profile`, the pass (infer, forward, backward), step index, op, output shape, ms.
pub struct StepTimer(Option<std::time::Instant>);

impl StepTimer {
    pub fn start() -> StepTimer {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let on = *ON.get_or_init(|| std::env::var_os("EDGETUNE_PROFILE").is_some());
        StepTimer(on.then(std::time::Instant::now))
    }

    pub fn report(self, pass: &str, i: usize, step: &plan::Step) {
        if let Some(t) = self.0 {
            let ms = t.elapsed().as_secs_f64() * 1e3;
            eprintln!("profile\t{pass}\t{i}\t{:?}\t{:?}\t{ms:.3}", step.op, step.out_shape);
        }
    }
}
