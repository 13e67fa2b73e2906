//! `edgetune infer`: a .npy array or images through the model; the first output to .npy and/or
//! the top-K classes printed.

use std::path::PathBuf;

use clap::Args;

use super::input::{image_input, parse_size};
use crate::data::image::{load_batch, read_labels, Prep, Preprocess, Resize};
use crate::data::npy;
use crate::data::recipe::Recipe;
use crate::device::{Device, Runner};
use crate::error::{Error, Result};
use crate::ops::softmax_rows;
use crate::tensor::Tensor;

#[derive(Args, Debug)]
pub struct InferArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// float32 .npy for the first graph input.
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    pub input: Option<PathBuf>,
    /// Image files (PNG, JPEG, BMP or WebP), one batch entry each.
    #[arg(long, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Where to write the first graph output (.npy).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Image preprocessing preset (default: what the model records, e.g. after an edgetune
    /// finetune; else imagenet).
    #[arg(long, value_enum)]
    pub preprocess: Option<Preprocess>,
    /// Image size HxW (default: the size the model records, else its declared size, else
    /// 224x224).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<[usize; 2]>,
    /// How images reach the size: stretch (scaled to exactly HxW) or crop (aspect ratio kept:
    /// scaled to cover HxW, then the centre cut out, as torchvision's Resize + CenterCrop).
    /// Default: what the model records, else stretch.
    #[arg(long, value_enum)]
    pub resize: Option<Resize>,
    /// Class names: one per line, or a JSON object/array (default: the class names the model
    /// records, e.g. the folder names it was finetuned on).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Print the K best classes of each batch entry.
    #[arg(long)]
    pub top: Option<usize>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where to run: cpu, or cuda (a build with `--features cuda` and an NVIDIA GPU).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

pub fn run(a: InferArgs) -> Result<()> {
    crate::device::check(a.device)?;
    let model = crate::onnx::load(&a.model)?;
    let recipe = Recipe::of(&model);
    let (x, names): (Tensor, Vec<String>) = match &a.input {
        Some(path) => {
            let x = npy::read_tensor(path)?;
            let n = x.shape().first().copied().unwrap_or(1);
            (x, (0..n).map(|i| format!("{}[{i}]", path.display())).collect())
        }
        None => {
            let info = image_input(&model.graph)?;
            let size = a.size.or(recipe.input_size).unwrap_or(info.size);
            let preprocess = a.preprocess.or(recipe.preprocess).unwrap_or(Preprocess::Imagenet);
            let resize = a.resize.or(recipe.resize).unwrap_or(Resize::Stretch);
            let prep = Prep { channels: info.channels, size, preprocess, layout: info.layout, resize };
            let x = load_batch(&a.image, &prep)?;
            (x, a.image.iter().map(|p| p.display().to_string()).collect())
        }
    };
    let y = Runner::new(model.graph, a.device, a.threads)?.run(vec![x])?.swap_remove(0);
    if let Some(out) = &a.output {
        npy::write_tensor(out, &y)?;
    }
    let labels = match a.labels.as_deref() {
        Some(path) => Some(read_labels(path)?),
        // Recorded names that do not fit the output (another tool's metadata) are not used.
        None => recipe.classes.filter(|c| y.rank() == 2 && c.len() == y.shape()[1]),
    };
    let top = a.top.or((a.output.is_none() || labels.is_some()).then_some(5));
    if let Some(k) = top {
        print_top(&y, &names, labels.as_deref(), k)?;
    }
    Ok(())
}

fn print_top(y: &Tensor, names: &[String], labels: Option<&[String]>, k: usize) -> Result<()> {
    if y.rank() != 2 {
        say!("output shape {:?}", y.shape());
        return Ok(());
    }
    let classes = y.shape()[1];
    if let Some(l) = labels {
        if l.len() != classes {
            return Err(Error::data("labels", format!("{} names for {classes} classes", l.len())));
        }
    }
    let probs = softmax_rows(y);
    for (row, name) in probs.chunks(classes).zip(names) {
        say!("{name}");
        let mut idx: Vec<usize> = (0..classes).collect();
        idx.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
        for (rank, &i) in idx.iter().take(k).enumerate() {
            let label = labels.map_or_else(|| format!("class {i}"), |l| l[i].clone());
            say!("  {}. {label}  {:.4}", rank + 1, row[i]);
        }
    }
    Ok(())
}
