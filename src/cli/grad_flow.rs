//! `edgetune grad-flow`: the gradient-overlap report (crate::gradflow) on one batch, as a table,
//! as JSON, and as a PNG of the per-block norms.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::grad::{Batch, BatchArgs};
use crate::autodiff::GradPlan;
use crate::error::{Error, Result};
use crate::gradflow::{self, Report};
use crate::plot::{self, Panel, Series};
use crate::train::select;

#[derive(Args, Debug)]
pub struct GradFlowArgs {
    #[command(flatten)]
    pub batch: BatchArgs,
    /// One JSON object (`loss`, `adds`, `tensors`) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also draw the per-block norms and cosines to this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// ε of the ZNorm whose effect the tensor table shows.
    #[arg(long, default_value_t = 1e-8)]
    pub znorm_eps: f32,
}

pub fn run(a: GradFlowArgs) -> Result<()> {
    let Batch { model, x, labels, pool } = a.batch.load()?;
    let graph = &model.graph;
    let trainable = select::trainable(graph, "all")?;
    let param_names: Vec<String> =
        graph.initializers.iter().zip(&trainable).filter(|(_, &t)| t).map(|(i, _)| i.name.clone()).collect();
    let report = pool.install(|| -> Result<Report> {
        let plan = GradPlan::new(graph, &[x.shape().to_vec()], &trainable, a.batch.bn)?;
        let adds = gradflow::residual_adds(&plan);
        if adds.is_empty() && a.plot.is_some() {
            return Err(Error::data(a.batch.model.display().to_string(), "has no residual Add: nothing to plot"));
        }
        let name = |v| graph.value_name(v).to_string();
        gradflow::measure(&plan, &adds, x, &labels, a.znorm_eps, name, &param_names)
    })?;
    if let Some(path) = &a.plot {
        draw(path, &a.batch.model, &report)?;
    }
    if a.json {
        say!("{}", to_json(&report));
    } else {
        say!("{}", to_text(&report, &a.batch.model).trim_end());
    }
    Ok(())
}

fn to_json(r: &Report) -> serde_json::Value {
    let adds: Vec<_> = r
        .adds
        .iter()
        .map(|f| {
            json!({"node": f.node, "input": f.input, "projection": f.projection, "skip_norm": f.skip_norm,
                   "branch_norm": f.branch_norm, "cosine": f.cosine, "sum_norm": f.sum_norm})
        })
        .collect();
    let tensors: Vec<_> = r
        .tensors
        .iter()
        .map(|t| {
            json!({"name": t.name, "numel": t.numel, "mean": t.mean, "std": t.std,
                   "znorm_mean": t.znorm_mean, "znorm_std": t.znorm_std})
        })
        .collect();
    json!({"loss": r.loss, "adds": adds, "tensors": tensors})
}

fn to_text(r: &Report, model: &std::path::Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{}: loss {:.6}", model.display(), r.loss);
    if r.adds.is_empty() {
        let _ = writeln!(s, "no residual Add (an Add of a skip path and a branch that read one block input)");
    } else {
        let _ = writeln!(
            s,
            "\n{} residual Adds: the gradient reaching each block's input, by path (‖·‖ is the L2 norm)",
            r.adds.len()
        );
        let w = r.adds.iter().map(|f| f.node.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            s,
            "{:>3}  {:<w$}  {:>10}  {:>10}  {:>7}  {:>10}  {:>9}  skip",
            "#", "node", "‖skip‖", "‖branch‖", "cosine", "‖sum‖", "sum/max"
        );
        for (i, f) in r.adds.iter().enumerate() {
            let larger = f.skip_norm.max(f.branch_norm);
            let ratio = if larger > 0.0 { f.sum_norm / larger } else { 0.0 };
            let kind = if f.projection { "projection" } else { "identity" };
            let _ = writeln!(
                s,
                "{:>3}  {:<w$}  {:>10.3e}  {:>10.3e}  {:>7.3}  {:>10.3e}  {:>9.3}  {kind}",
                i + 1,
                f.node,
                f.skip_norm,
                f.branch_norm,
                f.cosine,
                f.sum_norm,
                ratio
            );
        }
    }
    let w = r.tensors.iter().map(|t| t.name.len()).max().unwrap_or(6).max(6);
    let _ = writeln!(s, "\ngradient of each trainable tensor, before and after ZNorm");
    let _ = writeln!(
        s,
        "{:<w$}  {:>9}  {:>10}  {:>10}  {:>11}  {:>10}",
        "tensor", "elements", "mean", "std", "ZNorm mean", "ZNorm std"
    );
    for t in &r.tensors {
        let _ = writeln!(
            s,
            "{:<w$}  {:>9}  {:>10.3e}  {:>10.3e}  {:>11.3e}  {:>10.4}",
            t.name, t.numel, t.mean, t.std, t.znorm_mean, t.znorm_std
        );
    }
    s
}

fn draw(path: &std::path::Path, model: &std::path::Path, r: &Report) -> Result<()> {
    let series = |name: &str, f: &dyn Fn(&gradflow::AddFlow) -> f64| Series {
        name: name.into(),
        points: r.adds.iter().enumerate().map(|(i, a)| ((i + 1) as f64, f(a))).collect(),
    };
    let file = model.file_name().map_or_else(|| model.display().to_string(), |f| f.to_string_lossy().into_owned());
    let panels = [
        Panel {
            title: format!("{file}: gradient norm at each block's input (loss {:.4})", r.loss),
            y_label: "L2 norm".into(),
            log_y: true,
            series: vec![
                series("skip path", &|a| a.skip_norm),
                series("branch", &|a| a.branch_norm),
                series("sum", &|a| a.sum_norm),
            ],
        },
        Panel {
            title: "cosine between the skip-path and branch gradients".into(),
            y_label: "cosine".into(),
            log_y: false,
            series: vec![series("cosine", &|a| a.cosine)],
        },
    ];
    plot::write_png(path, "residual block (forward order)", &panels, 900, 330)
}
