//! MNIST / Fashion-MNIST idx files (gzipped or not): `*-images-idx3-ubyte` (u8 N×H×W) and
//! `*-labels-idx1-ubyte` (u8 N). Sizes from the header are checked against the bytes present.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::dataset::Images;
use crate::error::{Error, Result};

/// Reads an idx file of u8 data with `dims` dimensions (un-gzipping it when it starts with the
/// gzip magic): the header first, then exactly the bytes its dims call for. A file, or a
/// decompressed stream, holding fewer or more bytes is refused without reading past the claim +1
/// byte, so a small gzip that inflates to gigabytes costs no more than its header says.
fn read_idx(path: &Path, dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |msg: String| Error::data(path.display().to_string(), msg);
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 2];
    let got = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let gz = got == 2 && magic == [0x1f, 0x8b];
    let mut stream: Box<dyn Read> =
        if gz { Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file))) } else { Box::new(file) };
    let read_err = |e: std::io::Error| if gz { bad(format!("corrupt gzip: {e}")) } else { Error::io(path, e) };
    let mut header = vec![0u8; 4 + 4 * dims];
    stream.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad(format!("not an idx file of u8 with {dims} dimension(s)")),
        _ => read_err(e),
    })?;
    if header[..3] != [0, 0, 8] || header[3] as usize != dims {
        return Err(bad(format!("not an idx file of u8 with {dims} dimension(s)")));
    }
    let shape: Vec<usize> =
        header[4..].chunks_exact(4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize).collect();
    let n = crate::tensor::checked_numel(&shape).ok_or_else(|| bad(format!("dims {shape:?} overflow")))?;
    // No allocation up front: the buffer grows with the bytes actually there.
    let mut body = Vec::new();
    stream.take(n as u64 + 1).read_to_end(&mut body).map_err(read_err)?;
    if body.len() != n {
        let held = if body.len() > n { "more than".to_string() } else { format!("{} bytes of data,", body.len()) };
        return Err(bad(format!("holds {held} its dims {shape:?} need ({n} bytes)")));
    }
    Ok((shape, body))
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
    let (shape, pixels) = read_idx(&img_path, 3)?;
    let (lshape, labels) = read_idx(&lab_path, 1)?;
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
