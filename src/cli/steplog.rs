//! The `finetune --log` file: one JSON object per line, one per step and one per validation,
//! each with the wall-clock time (`time`, UTC, RFC 3339) and the seconds since the run started
//! (`elapsed_s`). Floats the run holds as f32 (the learning rate, the loss) are written as the
//! f32 they are (`0.0001`, not `0.00009999999747378752`). Rows are flushed before each
//! checkpoint, so the rows of every step a checkpoint holds are on disk with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::error::{Error, Result};

pub struct StepLog {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    started: Instant,
}

impl StepLog {
    /// Opens `path` for a run starting after step `start`: a new run truncates it; a resumed one
    /// keeps the rows of steps up to `start` (a killed run may have written rows past its last
    /// checkpoint, which the resumed run writes again) and appends. `elapsed_s` counts from this
    /// process's start.
    pub fn open(path: &Path, start: usize) -> Result<StepLog> {
        let append = start > 0;
        if append {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let kept: String = text
                .lines()
                .filter(|l| {
                    let row: Option<Value> = serde_json::from_str(l).ok();
                    row.and_then(|r| r["step"].as_u64()).is_some_and(|s| s <= start as u64)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            if kept.len() != text.len() {
                crate::atomic::write_atomic(path, |w| w.write_all(kept.as_bytes()))?;
            }
        }
        let f = std::fs::OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(path);
        let out = std::io::BufWriter::new(f.map_err(|e| Error::io(path, e))?);
        Ok(StepLog { path: path.to_path_buf(), out, started: Instant::now() })
    }

    /// Writes `row` (a JSON object) with `time` and `elapsed_s` added.
    pub fn write(&mut self, mut row: Value) -> Result<()> {
        if let Some(o) = row.as_object_mut() {
            o.insert("time".into(), json!(rfc3339(SystemTime::now())));
            o.insert("elapsed_s".into(), json!((self.started.elapsed().as_secs_f64() * 1e3).round() / 1e3));
        }
        writeln!(self.out, "{row}").map_err(|e| Error::io(&self.path, e))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// An f32 as the JSON number with the same shortest decimal form (`1e-4` stays `0.0001`).
pub fn f32_json(v: f32) -> Value {
    v.to_string().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
}

/// `t` as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = ((d.as_secs() / 86_400) as i64, d.as_secs() % 86_400);
    let (y, m, day) = civil_from_days(days);
    let (h, min, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    format!("{y:04}-{m:02}-{day:02}T{h:02}:{min:02}:{s:02}.{:03}Z", d.subsec_millis())
}

/// The proleptic Gregorian date of `z` days after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_and_floats_as_written() {
        // 1_000_000_000 s after the epoch is 2001-09-09T01:46:40Z (date -u -d @1000000000).
        let t = UNIX_EPOCH + Duration::from_millis(1_000_000_000_250);
        assert_eq!(rfc3339(t), "2001-09-09T01:46:40.250Z");
        // 2024-02-29 is day 19782 (a leap day; date -u -d 2024-02-29 +%s is 1709164800).
        assert_eq!(civil_from_days(1_709_164_800 / 86_400), (2024, 2, 29));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(f32_json(1e-4).to_string(), "0.0001");
        assert_eq!(f32_json(0.1).to_string(), "0.1");
        assert_eq!(f32_json(f32::NAN), Value::Null);
    }

    #[test]
    fn a_resumed_log_keeps_the_rows_up_to_its_checkpoint() {
        // A killed run wrote steps 1-5 (and a validation at 4) but checkpointed after step 3.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.jsonl");
        let rows: String = [1, 2, 3, 4, 4, 5].iter().map(|s| format!("{{\"step\":{s}}}\n")).collect();
        std::fs::write(&p, rows).unwrap();
        let mut log = StepLog::open(&p, 3).unwrap();
        log.write(json!({"step": 4})).unwrap();
        log.flush().unwrap();
        let steps: Vec<u64> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [1, 2, 3, 4]);
        // A new run starts the file afresh.
        drop(log);
        StepLog::open(&p, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }
}
