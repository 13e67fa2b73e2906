//! Graph -> ONNX file: the imported ModelProto with new initializer contents. Node order, names,
//! metadata and opset stay as they were; every initializer is written from the new values where
//! given, else from the loaded ones: embedded (little-endian raw data), or, when the input model
//! kept its tensors as external data, in one `<output>.data` file beside the output (64-byte
//! aligned, so it can be memory-mapped). Each file is written atomically, data before model.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::StringStringEntryProto;

use super::Model;
use crate::atomic::{write_atomic, write_checked};
use crate::error::{Error, Result};
use crate::graph::Const;
use crate::tensor::Tensor;

/// Writes `model` to `path` with the initializers named in `values` replaced; `check` sees the
/// complete model file (under a temporary name, its data already in place) before it lands.
pub fn save(
    model: &Model,
    values: &[(String, Tensor)],
    path: &Path,
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let updated: HashMap<&str, &Tensor> = values.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let loaded: HashMap<&str, &Const> = model.graph.initializers.iter().map(|i| (i.name.as_str(), &i.data)).collect();
    let mut proto = model.proto.clone();
    let graph = proto.graph.as_mut().ok_or_else(|| Error::Runtime("model without graph".into()))?;
    let external = graph.initializer.iter().any(|t| t.data_location == Some(DataLocation::External as i32));
    let data_name = format!("{}.data", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let mut blob: Vec<u8> = Vec::new();
    for t in graph.initializer.iter_mut() {
        let dtype = DataType::try_from(t.data_type).unwrap_or(DataType::Float);
        let (dims, raw) = match (updated.get(t.name.as_str()), loaded.get(t.name.as_str())) {
            (Some(new), _) => (new.shape().to_vec(), float_bytes(new.data(), dtype)),
            (None, Some(Const::F32(old))) => (old.shape().to_vec(), float_bytes(old.data(), dtype)),
            (None, Some(Const::I64(old))) => (old.shape.clone(), int_bytes(&old.data, dtype)),
            (None, None) => return Err(Error::Runtime(format!("initializer '{}' has no data to write", t.name))),
        };
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.raw_data = raw;
        t.float_data.clear();
        t.int32_data.clear();
        t.int64_data.clear();
        t.double_data.clear();
        t.uint64_data.clear();
        t.external_data.clear();
        t.data_location = None;
        if external {
            let offset = blob.len().next_multiple_of(64);
            blob.resize(offset, 0);
            blob.append(&mut t.raw_data);
            let entry = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v };
            t.external_data = vec![
                entry("location", data_name.clone()),
                entry("offset", offset.to_string()),
                entry("length", (blob.len() - offset).to_string()),
            ];
            t.data_location = Some(DataLocation::External as i32);
        }
    }
    if external {
        write_atomic(&path.with_file_name(&data_name), |w| w.write_all(&blob))?;
    }
    let bytes = proto.encode_to_vec();
    write_checked(path, |w| w.write_all(&bytes), check)
}

/// Floats in the tensor's own element type (f32, or f64 where the file had doubles).
fn float_bytes(v: &[f32], dtype: DataType) -> Vec<u8> {
    match dtype {
        DataType::Double => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Integers in the tensor's own element type (import widened them all to i64).
fn int_bytes(v: &[i64], dtype: DataType) -> Vec<u8> {
    match dtype {
        DataType::Int32 | DataType::Uint32 => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
        DataType::Int16 | DataType::Uint16 => v.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect(),
        DataType::Int8 | DataType::Uint8 | DataType::Bool => v.iter().map(|&x| x as u8).collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}
