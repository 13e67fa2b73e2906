//! CIFAR-10 binary version: `data_batch_1.bin` … `data_batch_5.bin` (train) and
//! `test_batch.bin`; each record is one label byte then a 32×32 image as three 1024-byte planes
//! (R, G, B). Files that are not whole records are refused.

use std::path::Path;

use super::dataset::Images;
use crate::error::{Error, Result};

const RECORD: usize = 1 + 3 * 1024;

/// Images (channel-last bytes) and labels of the train or test split in `dir`.
pub fn load(dir: &Path, test: bool) -> Result<(Images, Vec<i64>)> {
    let names: Vec<String> =
        if test { vec!["test_batch.bin".into()] } else { (1..=5).map(|i| format!("data_batch_{i}.bin")).collect() };
    let files: Vec<_> = names.iter().map(|n| dir.join(n)).filter(|p| p.is_file()).collect();
    if files.is_empty() {
        return Err(Error::data(
            dir.display().to_string(),
            format!("no CIFAR-10 binary files ({}) here", names.join(", ")),
        ));
    }
    let (mut data, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| Error::io(&f, e))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(Error::data(
                f.display().to_string(),
                format!("{} bytes is not a whole number of {RECORD}-byte records", bytes.len()),
            ));
        }
        for rec in bytes.chunks_exact(RECORD) {
            if rec[0] > 9 {
                return Err(Error::data(
                    f.display().to_string(),
                    format!("label {} is not a CIFAR-10 class (0-9)", rec[0]),
                ));
            }
            labels.push(i64::from(rec[0]));
            let planes = &rec[1..];
            data.extend((0..1024).flat_map(|i| [planes[i], planes[1024 + i], planes[2048 + i]]));
        }
    }
    let n = labels.len();
    Ok((Images::Bytes { data, n, h: 32, w: 32, c: 3 }, labels))
}
