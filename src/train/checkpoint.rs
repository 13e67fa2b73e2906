//! Training checkpoints: everything a run needs to continue exactly where it stopped — weights,
//! BatchNorm running statistics, optimizer state and step count, and the step reached (which
//! fixes the schedule position, the epoch's shuffling seed and the data position). One `.npz` per
//! directory, written atomically, so a crash or Ctrl-C leaves the previous checkpoint intact.
//! The options that shape the run are stored with it: a checkpoint resumes only the same run
//! (possibly continued to more steps), and names each option that differs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::trainer::Trainer;
use crate::data::npy::{from_array, write_npz, Npz};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub fn path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.npz")
}

/// The options that shape a run's trajectory, by flag name (`lr`, `batch`, ...), as text: a
/// checkpoint resumes only a run with the same ones. The run's length (`--steps`/`--epochs`) is
/// not among them: a run continues to a larger one.
pub type RunOptions = Vec<(&'static str, String)>;

/// Writes the trainer's state after `step` completed steps of a run of `total` with `options`.
pub fn save(dir: &Path, trainer: &Trainer, (step, total): (usize, usize), options: &RunOptions) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let opts: serde_json::Map<String, serde_json::Value> =
        options.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let meta = json!({"step": step, "total_steps": total, "optimizer_steps": trainer.optimizer.steps, "options": opts})
        .to_string();
    let bytes: Vec<f32> = meta.bytes().map(f32::from).collect();
    let mut arrays = vec![("meta".to_string(), Tensor::from_vec([bytes.len()], bytes))];
    arrays.extend(trainer.values()?.into_iter().map(|(n, t)| (format!("value/{n}"), t)));
    for (n, a, b) in trainer.state()? {
        arrays.push((format!("first/{n}"), Tensor::from_vec([a.len()], a)));
        arrays.push((format!("second/{n}"), Tensor::from_vec([b.len()], b)));
    }
    write_npz(&path(dir), &arrays)
}

/// Restores the trainer from `dir`'s checkpoint of a run with the same `options`; returns the
/// steps it completed and the length of the run that wrote it. No checkpoint there, or one of a
/// run with other options, is an error naming the folder (and each option that differs).
pub fn load(dir: &Path, trainer: &mut Trainer, options: &RunOptions) -> Result<(usize, Option<usize>)> {
    let p = path(dir);
    if !p.exists() {
        return Err(Error::data(
            dir.display().to_string(),
            "--resume: no checkpoint here (a run with --checkpoint DIR writes one)",
        ));
    }
    let what = p.display().to_string();
    let bad = |msg: String| Error::data(&what, msg);
    let mut npz = Npz::open(&p).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    let mut get = |name: &str| -> Result<Tensor> { Ok(from_array(npz.floats(name)?)) };
    let meta: String = get("meta")?.data().iter().map(|&v| v as u8 as char).collect();
    let meta: serde_json::Value = serde_json::from_str(&meta).map_err(|e| bad(format!("meta: {e}")))?;
    let saved = meta["options"]
        .as_object()
        .ok_or_else(|| bad("was written by an older edgetune; use another --checkpoint folder or delete it".into()))?;
    let differ: Vec<String> = options
        .iter()
        .filter_map(|(k, v)| {
            let was = saved.get(*k).and_then(|x| x.as_str());
            (was != Some(v.as_str())).then(|| format!("--{k} {} (now {v})", was.unwrap_or("unset")))
        })
        .collect();
    if !differ.is_empty() {
        return Err(bad(format!(
            "was written by a run with {}; resume with the same options, or use another --checkpoint folder",
            differ.join(", ")
        )));
    }
    let mut values = HashMap::new();
    for n in trainer.value_names() {
        values.insert(n.to_string(), get(&format!("value/{n}"))?);
    }
    let mut state = HashMap::new();
    for n in trainer.param_names() {
        state.insert(n.to_string(), (get(&format!("first/{n}"))?.into_vec(), get(&format!("second/{n}"))?.into_vec()));
    }
    let steps = meta["optimizer_steps"].as_u64().ok_or_else(|| bad("meta without optimizer_steps".into()))?;
    trainer.restore(&values, &state, steps).map_err(bad)?;
    let step = meta["step"].as_u64().map(|s| s as usize).ok_or_else(|| bad("meta without step".into()))?;
    Ok((step, meta["total_steps"].as_u64().map(|t| t as usize)))
}
