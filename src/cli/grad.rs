//! `edgetune grad`: one forward and backward pass on a batch; the loss and the gradient of every
//! trainable initializer, keyed by its ONNX name, to an .npz.

use std::path::PathBuf;

use clap::Args;

use crate::autodiff::BnMode;
use crate::data::npy;
use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;
use crate::train::gradients::gradients;

/// A model and one labelled batch: what `grad` and `grad-flow` run on.
#[derive(Args, Debug)]
pub struct BatchArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// float32 .npy batch for the first graph input.
    #[arg(long)]
    pub input: PathBuf,
    /// Integer class labels (.npy), one per batch entry.
    #[arg(long)]
    pub labels: PathBuf,
    /// BatchNorm: batch statistics (train), running statistics (frozen), or auto: train where
    /// the layer's scale or bias gets gradients, frozen elsewhere (what finetune does).
    #[arg(long, value_enum, default_value = "auto")]
    pub bn: BnMode,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// What `BatchArgs` name, loaded: the model, the batch, its labels and the thread pool.
pub struct Batch {
    pub model: crate::onnx::Model,
    pub x: Tensor,
    pub labels: Vec<i64>,
    pub pool: rayon::ThreadPool,
}

impl BatchArgs {
    pub fn load(&self) -> Result<Batch> {
        Ok(Batch {
            model: crate::onnx::load(&self.model)?,
            x: npy::read_tensor(&self.input)?,
            labels: npy::read_labels(&self.labels)?,
            pool: super::thread_pool(self.threads)?,
        })
    }
}

#[derive(Args, Debug)]
pub struct GradArgs {
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Which initializers get gradients: all, head (the classifier) or a regex on names.
    #[arg(long, default_value = "all", value_parser = crate::train::select::parse_spec)]
    pub train: String,
    /// The .npz to write: `loss` and one array per trainable initializer.
    #[arg(long)]
    pub output: PathBuf,
    /// Where to run: cpu, or cuda (a build with `--features cuda` and an NVIDIA GPU).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

pub fn run(a: GradArgs) -> Result<()> {
    crate::device::check(a.device)?;
    let Batch { model, x, labels, pool } = a.batch.load()?;
    let g = pool.install(|| gradients(&model.graph, x, &labels, &a.train, a.batch.bn, a.device))?;
    let loss = g.loss;
    let mut arrays = vec![("loss".to_string(), Tensor::scalar(loss))];
    arrays.extend(g.grads);
    npy::write_npz(&a.output, &arrays)?;
    say!("loss {loss:.6}; {} gradients written to {}", arrays.len() - 1, a.output.display());
    Ok(())
}
