//! `.npy` / `.npz` in and out (through `ndarray-npy`), converted to and from our `Tensor`.

use std::path::Path;

use std::io::Read;

use ndarray::{ArrayD, IxDyn};

use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A float array from checked `.npy` bytes: float32, or float64 converted.
fn floats_from(bytes: &[u8], what: &str) -> Result<ArrayD<f32>> {
    let err = |e: ReadNpyError| Error::data(what, format!("not a readable float32 .npy array: {e}"));
    match ArrayD::<f32>::read_npy(bytes) {
        Ok(a) => Ok(a),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(ArrayD::<f64>::read_npy(bytes).map_err(err)?.mapv(|v| v as f32)),
        Err(e) => Err(err(e)),
    }
}

/// Integer class labels from checked `.npy` bytes: int64, int32, uint8, or floats holding integers.
fn labels_from(bytes: &[u8], what: &str) -> Result<Vec<i64>> {
    if let Ok(a) = ArrayD::<i64>::read_npy(bytes) {
        return Ok(a.iter().copied().collect());
    }
    if let Ok(a) = ArrayD::<i32>::read_npy(bytes) {
        return Ok(a.iter().map(|&v| v.into()).collect());
    }
    if let Ok(a) = ArrayD::<u8>::read_npy(bytes) {
        return Ok(a.iter().map(|&v| v.into()).collect());
    }
    let floats = floats_from(bytes, what).map_err(|_| Error::data(what, "labels must be an integer .npy array"))?;
    floats
        .iter()
        .map(|&v| match v.fract() == 0.0 && v.is_finite() {
            true => Ok(v as i64),
            false => Err(Error::data(what, format!("label {v} is not an integer"))),
        })
        .collect()
}

/// The bytes of an `.npy` file whose header fits in them.
fn npy_bytes(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    check_npy_header(&bytes, &path.display().to_string())?;
    Ok(bytes)
}

/// Checks that the header of the `.npy` in `bytes` fits in them. (ndarray-npy allocates the
/// header length the file states before reading it: a lying 4-byte length would cost gigabytes.)
fn check_npy_header(bytes: &[u8], what: &str) -> Result<()> {
    let bad = |msg: String| Error::data(what, msg);
    if bytes.len() < 10 || !bytes.starts_with(b"\x93NUMPY") {
        return Err(bad("not an .npy file (no \\x93NUMPY magic)".into()));
    }
    let (start, len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    if start + len > bytes.len() {
        return Err(bad(format!("its header claims {len} bytes, only {} are there", bytes.len())));
    }
    // ndarray-npy also allocates the shape's element count before reading the data: every
    // element takes at least a byte, so more elements than data bytes is a lie.
    let header = String::from_utf8_lossy(&bytes[start..start + len]);
    let shape = header.split("'shape':").nth(1).and_then(|r| r.split_once('(')).and_then(|(_, r)| r.split_once(')'));
    let Some((dims, _)) = shape else { return Err(bad("its header has no 'shape'".into())) };
    let dims: Option<Vec<usize>> =
        dims.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().ok()).collect();
    let numel = dims.as_deref().and_then(crate::tensor::checked_numel);
    let data = bytes.len() - start - len;
    match numel {
        Some(n) if n <= data => Ok(()),
        _ => Err(bad(format!("its shape {} holds more elements than its {data} data bytes", dims_text(&dims)))),
    }
}

fn dims_text(dims: &Option<Vec<usize>>) -> String {
    dims.as_ref().map_or("(unreadable)".into(), |d| format!("{d:?}"))
}

/// An `.npz` archive whose entries are read with checked sizes: an entry is read no further than
/// the size the archive states for it (+1 byte, to catch a lie), and its `.npy` header must fit
/// in what was read, before ndarray-npy parses it.
pub struct Npz {
    what: String,
    zip: zip::ZipArchive<std::fs::File>,
}

impl Npz {
    pub fn open(path: &Path) -> Result<Npz> {
        let what = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let zip = zip::ZipArchive::new(file).map_err(|e| Error::data(&what, format!("not an .npz archive: {e}")))?;
        Ok(Npz { what, zip })
    }

    /// The checked bytes of entry `name` (`name.npy` in the archive).
    fn entry(&mut self, name: &str) -> Result<Vec<u8>> {
        let what = format!("{} entry '{name}'", self.what);
        let mut f = self.zip.by_name(&format!("{name}.npy")).map_err(|e| Error::data(&what, e.to_string()))?;
        let size = f.size();
        let mut bytes = Vec::new();
        (&mut f).take(size.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| Error::data(&what, e.to_string()))?;
        if bytes.len() as u64 != size {
            return Err(Error::data(&what, format!("holds {} bytes, the archive says {size}", bytes.len())));
        }
        check_npy_header(&bytes, &what)?;
        Ok(bytes)
    }

    /// Entry `name` as floats (float32, or float64 converted).
    pub fn floats(&mut self, name: &str) -> Result<ArrayD<f32>> {
        let bytes = self.entry(name)?;
        floats_from(&bytes, &format!("{} entry '{name}'", self.what))
    }

    /// Entry `name` as integer labels (see `read_labels`).
    pub fn labels(&mut self, name: &str) -> Result<Vec<i64>> {
        let bytes = self.entry(name)?;
        labels_from(&bytes, &format!("{} entry '{name}'", self.what))
    }
}

/// Reads a float32 (or float64, converted) `.npy` file.
pub fn read_tensor(path: &Path) -> Result<Tensor> {
    Ok(from_array(floats_from(&npy_bytes(path)?, &path.display().to_string())?))
}

pub fn from_array(arr: ArrayD<f32>) -> Tensor {
    let shape = arr.shape().to_vec();
    let data = if arr.is_standard_layout() { arr.into_raw_vec_and_offset().0 } else { arr.iter().copied().collect() };
    Tensor::from_vec(shape, data)
}

pub fn to_array(t: &Tensor) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(t.shape()), t.data().to_vec()).expect("tensor data matches its shape")
}

/// Writes `t` as a float32 `.npy`, atomically.
pub fn write_tensor(path: &Path, t: &Tensor) -> Result<()> {
    let arr = to_array(t);
    write_atomic(path, |w| arr.write_npy(w).map_err(std::io::Error::other))
}

/// Reads integer class labels from a `.npy` (int64, int32, uint8, or floats holding integers).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    labels_from(&npy_bytes(path)?, &path.display().to_string())
}

/// Writes named float32 arrays (and 0-d scalars) to a `.npz`, atomically.
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<()> {
    let mut npz = ndarray_npy::NpzWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, t) in arrays {
        npz.add_array(name.as_str(), &to_array(t)).map_err(|e| Error::Runtime(format!("npz entry '{name}': {e}")))?;
    }
    let bytes = npz.finish().map_err(|e| Error::Runtime(format!("npz: {e}")))?.into_inner();
    write_atomic(path, |w| w.write_all(&bytes))
}
