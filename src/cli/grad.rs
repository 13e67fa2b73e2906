//! `edgetune grad`: one forward and backward pass on a batch; the loss and the gradient of every
//! trainable initializer, keyed by its ONNX name, to an .npz.

use std::path::PathBuf;

use clap::Args;

use crate::autodiff::{BnMode, GradPlan};
use crate::data::npy;
use crate::error::Result;
use crate::tensor::Tensor;
use crate::train::{loss, select};

#[derive(Args, Debug)]
pub struct GradArgs {
    pub model: PathBuf,
    /// float32 .npy batch for the first graph input.
    #[arg(long)]
    pub input: PathBuf,
    /// Integer class labels (.npy), one per batch entry.
    #[arg(long)]
    pub labels: PathBuf,
    /// BatchNorm: batch statistics (train) or running statistics (frozen).
    #[arg(long, value_enum, default_value = "train")]
    pub bn: BnMode,
    /// Which initializers get gradients: all, head (the classifier) or a regex on names.
    #[arg(long, default_value = "all")]
    pub train: String,
    /// The .npz to write: `loss` and one array per trainable initializer.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(a: GradArgs) -> Result<()> {
    let model = crate::onnx::load(&a.model)?;
    let x = npy::read_tensor(&a.input)?;
    let labels = npy::read_labels(&a.labels)?;
    let pool = super::thread_pool(a.threads)?;
    let graph = &model.graph;
    let trainable = select::trainable(graph, &a.train)?;
    let (loss, grads, plan) = pool.install(|| -> Result<_> {
        let plan = GradPlan::new(graph, &[x.shape().to_vec()], &trainable, a.bn)?;
        let tape = plan.forward(vec![x], &[]);
        let (loss, dlogits) = loss::softmax_cross_entropy(&tape.logits, &labels)?;
        let grads = plan.backward(tape, dlogits)?;
        Ok((loss, grads, plan))
    })?;
    let names = graph.initializers.iter().zip(&trainable).filter(|(_, &t)| t).map(|(i, _)| i.name.clone());
    let mut arrays = vec![("loss".to_string(), Tensor::scalar(loss))];
    arrays.extend(names.zip(grads));
    npy::write_npz(&a.output, &arrays)?;
    println!("loss {loss:.6}; {} gradients written to {}", plan.params.len(), a.output.display());
    Ok(())
}
