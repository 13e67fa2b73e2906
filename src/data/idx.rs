//! MNIST / Fashion-MNIST idx files (gzipped or not): `*-images-idx3-ubyte` (u8 N×H×W) and
//! `*-labels-idx1-ubyte` (u8 N). Sizes from the header are checked against the bytes present.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::Images;
use crate::error::{Error, Result};

/// Reads a file, un-gzipping it when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path.display().to_string(), format!("corrupt gzip: {e}")))?;
        return Ok(out);
    }
    Ok(raw)
}

/// The idx payload after checking the magic (u8 data, `dims` dimensions) and the sizes.
fn parse(path: &Path, bytes: &[u8], dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |msg: String| Error::data(path.display().to_string(), msg);
    if bytes.len() < 4 + 4 * dims || bytes[..3] != [0, 0, 8] || bytes[3] as usize != dims {
        return Err(bad(format!("not an idx file of u8 with {dims} dimension(s)")));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let n = crate::tensor::checked_numel(&shape).ok_or_else(|| bad(format!("dims {shape:?} overflow")))?;
    let body = &bytes[4 + 4 * dims..];
    if body.len() != n {
        return Err(bad(format!("holds {} bytes of data, its dims {shape:?} need {n}", body.len())));
    }
    Ok((shape, body.to_vec()))
}

/// The first existing file among `stem` + "", ".gz" in `dir`.
fn find(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    stems.iter().flat_map(|s| [s.to_string(), format!("{s}.gz")]).map(|f| dir.join(f)).find(|p| p.is_file())
}

/// Images and labels of the `train` or `t10k` split in `dir`.
pub fn load(dir: &Path, test: bool) -> Result<(Images, Vec<i64>)> {
    let split = if test { "t10k" } else { "train" };
    let what = dir.display().to_string();
    let missing = |kind: &str| Error::data(&what, format!("no {split}-{kind}-idx*-ubyte[.gz] file here"));
    let img_path = find(dir, &[&format!("{split}-images-idx3-ubyte"), &format!("{split}-images.idx3-ubyte")])
        .ok_or_else(|| missing("images"))?;
    let lab_path = find(dir, &[&format!("{split}-labels-idx1-ubyte"), &format!("{split}-labels.idx1-ubyte")])
        .ok_or_else(|| missing("labels"))?;
    let (shape, pixels) = parse(&img_path, &read_maybe_gz(&img_path)?, 3)?;
    let (lshape, labels) = parse(&lab_path, &read_maybe_gz(&lab_path)?, 1)?;
    if lshape[0] != shape[0] {
        return Err(Error::data(&what, format!("{} images but {} labels", shape[0], lshape[0])));
    }
    Ok((
        Images::Bytes { data: pixels, n: shape[0], h: shape[1], w: shape[2], c: 1 },
        labels.into_iter().map(i64::from).collect(),
    ))
}

/// Writes an idx file (tests, tools): u8 data with the given dims.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
