//! Training checkpoints: everything a run needs to continue exactly where it stopped — weights,
//! BatchNorm running statistics, optimizer state and step count, and the step reached (which
//! fixes the schedule position, the epoch's shuffling seed and the data position). One `.npz` per
//! directory, written atomically, so a crash or Ctrl-C leaves the previous checkpoint intact.
//! A fingerprint of the options that shape the run guards against resuming a different run.

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

/// Writes the trainer's state after `step` completed steps.
pub fn save(dir: &Path, trainer: &Trainer, step: usize, fingerprint: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let meta =
        json!({"step": step, "optimizer_steps": trainer.optimizer.steps, "fingerprint": fingerprint}).to_string();
    let bytes: Vec<f32> = meta.bytes().map(f32::from).collect();
    let mut arrays = vec![("meta".to_string(), Tensor::from_vec([bytes.len()], bytes))];
    arrays.extend(trainer.values()?.into_iter().map(|(n, t)| (format!("value/{n}"), t)));
    for (n, a, b) in trainer.state()? {
        arrays.push((format!("first/{n}"), Tensor::from_vec([a.len()], a)));
        arrays.push((format!("second/{n}"), Tensor::from_vec([b.len()], b)));
    }
    write_npz(&path(dir), &arrays)
}

/// Restores the trainer from `dir`'s checkpoint, if there is one; returns the steps completed.
pub fn load(dir: &Path, trainer: &mut Trainer, fingerprint: &str) -> Result<Option<usize>> {
    let p = path(dir);
    if !p.exists() {
        return Ok(None);
    }
    let what = p.display().to_string();
    let bad = |msg: String| Error::data(&what, msg);
    let mut npz = Npz::open(&p).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    let mut get = |name: &str| -> Result<Tensor> { Ok(from_array(npz.floats(name)?)) };
    let meta: String = get("meta")?.data().iter().map(|&v| v as u8 as char).collect();
    let meta: serde_json::Value = serde_json::from_str(&meta).map_err(|e| bad(format!("meta: {e}")))?;
    if meta["fingerprint"] != fingerprint {
        return Err(bad(format!(
            "was written by a run with other options ({}); use another --checkpoint folder or the same options",
            meta["fingerprint"].as_str().unwrap_or("?")
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
    Ok(meta["step"].as_u64().map(|s| s as usize))
}
