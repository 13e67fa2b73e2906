//! Decoding `TensorProto`s (initializers and `Constant` values) into `Const`s. Sizes come from an
//! untrusted file: element counts use checked arithmetic and are compared with the bytes present
//! before anything is allocated.

use std::ops::Range;
use std::sync::Arc;

use memmap2::Mmap;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::TensorProto;

use super::external::ExternalFiles;
use crate::graph::{Const, IntTensor};
use crate::tensor::{checked_numel, Tensor};

/// Decodes `t`, taking its embedded bytes (the proto keeps its dims and name only). `in_map`:
/// where its raw data lies in the mapped model file, when the import located it there (then the
/// proto's own `raw_data` is empty, or holds an earlier occurrence the last one overrides).
pub fn decode(
    t: &mut TensorProto,
    external: &mut ExternalFiles,
    in_map: Option<(&Arc<Mmap>, Range<usize>)>,
) -> Result<Const, String> {
    let name = if t.name.is_empty() { "<unnamed>".to_string() } else { t.name.clone() };
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor '{name}' has a negative dimension {d}")))
        .collect::<Result<Vec<_>, _>>()?;
    let n = checked_numel(&shape)
        .filter(|&n| n.checked_mul(8).is_some())
        .ok_or_else(|| format!("tensor '{name}': dims {:?} overflow", t.dims))?;
    let dtype = DataType::try_from(t.data_type).unwrap_or(DataType::Undefined);
    let elem_size = match dtype {
        DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
        DataType::Double | DataType::Int64 | DataType::Uint64 => 8,
        DataType::Int8 | DataType::Uint8 | DataType::Bool => 1,
        DataType::Int16 | DataType::Uint16 => 2,
        other => return Err(format!("tensor '{name}' has element type {} (unsupported)", other.as_str_name())),
    };
    let need = n * elem_size;

    if t.data_location == Some(DataLocation::External as i32) {
        return decode_external(t, &name, shape, dtype, need, external);
    }
    if let Some((map, range)) = in_map {
        t.raw_data = Vec::new();
        return raw_in_map(&name, &t.dims, map, range, shape, dtype, need);
    }
    if !t.raw_data.is_empty() || n == 0 {
        let raw = std::mem::take(&mut t.raw_data);
        if raw.len() != need {
            return Err(format!(
                "tensor '{name}' holds {} bytes of data, its dims {:?} need {need}",
                raw.len(),
                t.dims
            ));
        }
        return Ok(from_le_bytes(&raw, shape, dtype));
    }
    let c = match dtype {
        DataType::Float => Const::F32(Tensor::from_vec(shape.clone(), take_exact(&mut t.float_data, n, &name)?)),
        DataType::Double => {
            let v = take_exact(&mut t.double_data, n, &name)?;
            Const::F32(Tensor::from_vec(shape.clone(), v.into_iter().map(|x| x as f32).collect()))
        }
        DataType::Int64 => Const::I64(IntTensor { shape, data: take_exact(&mut t.int64_data, n, &name)? }),
        DataType::Uint64 => {
            let v = take_exact(&mut t.uint64_data, n, &name)?;
            Const::I64(IntTensor { shape, data: v.into_iter().map(|x| x as i64).collect() })
        }
        // int32_data also carries the narrower integer types and bool.
        _ => {
            let v = take_exact(&mut t.int32_data, n, &name)?;
            Const::I64(IntTensor { shape, data: v.into_iter().map(i64::from).collect() })
        }
    };
    Ok(c)
}

fn take_exact<T>(v: &mut Vec<T>, n: usize, name: &str) -> Result<Vec<T>, String> {
    if v.len() != n {
        return Err(format!("tensor '{name}' holds {} values, its dims need {n}", v.len()));
    }
    Ok(std::mem::take(v))
}

/// `need` bytes of `dtype` at `range` of a mapped file: floats viewed in place where aligned.
fn raw_in_map(
    name: &str,
    dims: &[i64],
    map: &Arc<Mmap>,
    range: Range<usize>,
    shape: Vec<usize>,
    dtype: DataType,
    need: usize,
) -> Result<Const, String> {
    if range.len() != need {
        return Err(format!("tensor '{name}' holds {} bytes of data, its dims {dims:?} need {need}", range.len()));
    }
    if dtype == DataType::Float {
        if let Some(t) = Tensor::from_mapped(shape.clone(), map.clone(), range.start, need / 4) {
            return Ok(Const::F32(t));
        }
    }
    Ok(from_le_bytes(&map[range], shape, dtype))
}

fn decode_external(
    t: &TensorProto,
    name: &str,
    shape: Vec<usize>,
    dtype: DataType,
    need: usize,
    external: &mut ExternalFiles,
) -> Result<Const, String> {
    let field = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
    let location = field("location").ok_or_else(|| format!("tensor '{name}' is external but names no location"))?;
    let parse = |key: &str| -> Result<Option<usize>, String> {
        field(key)
            .map(|s| s.parse::<usize>().map_err(|_| format!("tensor '{name}': external {key} '{s}' is not a number")))
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let map = external.map(location)?;
    let length = match parse("length")? {
        Some(l) => l,
        None => map.len().saturating_sub(offset),
    };
    let end = offset.checked_add(length).filter(|&e| e <= map.len());
    if end.is_none() || length < need {
        return Err(format!(
            "tensor '{name}': external data '{location}' holds {} bytes at offset {offset}, its dims need {need}",
            map.len().saturating_sub(offset).min(length)
        ));
    }
    if dtype == DataType::Float {
        let n = need / 4;
        if let Some(t) = Tensor::from_mapped(shape.clone(), map.clone(), offset, n) {
            return Ok(Const::F32(t));
        }
    }
    Ok(from_le_bytes(&map[offset..offset + need], shape, dtype))
}

/// Little-endian bytes of `dtype` (length already checked) into a `Const`.
fn from_le_bytes(raw: &[u8], shape: Vec<usize>, dtype: DataType) -> Const {
    fn chunks<const W: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; W]> + '_ {
        raw.chunks_exact(W).map(|c| c.try_into().expect("exact chunk"))
    }
    match dtype {
        DataType::Float => Const::F32(Tensor::from_vec(shape, chunks::<4>(raw).map(f32::from_le_bytes).collect())),
        DataType::Double => {
            Const::F32(Tensor::from_vec(shape, chunks::<8>(raw).map(|b| f64::from_le_bytes(b) as f32).collect()))
        }
        _ => {
            let data: Vec<i64> = match dtype {
                DataType::Int64 => chunks::<8>(raw).map(i64::from_le_bytes).collect(),
                DataType::Uint64 => chunks::<8>(raw).map(|b| u64::from_le_bytes(b) as i64).collect(),
                DataType::Int32 => chunks::<4>(raw).map(|b| i32::from_le_bytes(b).into()).collect(),
                DataType::Uint32 => chunks::<4>(raw).map(|b| u32::from_le_bytes(b).into()).collect(),
                DataType::Int16 => chunks::<2>(raw).map(|b| i16::from_le_bytes(b).into()).collect(),
                DataType::Uint16 => chunks::<2>(raw).map(|b| u16::from_le_bytes(b).into()).collect(),
                DataType::Int8 => raw.iter().map(|&b| (b as i8).into()).collect(),
                _ => raw.iter().map(|&b| b.into()).collect(),
            };
            Const::I64(IntTensor { shape, data })
        }
    }
}

/// `c` as little-endian bytes of `dtype`, the tensor's own element type in the file (import
/// widened integers to i64 and doubles to f32).
pub fn encode(c: &Const, dtype: DataType) -> Vec<u8> {
    match c {
        Const::F32(t) => encode_floats(t.data(), dtype),
        Const::I64(t) => match dtype {
            DataType::Int32 | DataType::Uint32 => t.data.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
            DataType::Int16 | DataType::Uint16 => t.data.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect(),
            DataType::Int8 | DataType::Uint8 | DataType::Bool => t.data.iter().map(|&x| x as u8).collect(),
            _ => t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        },
    }
}

/// Floats as f32 bytes, or f64 where the file had doubles.
pub fn encode_floats(v: &[f32], dtype: DataType) -> Vec<u8> {
    match dtype {
        DataType::Double => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// The element type `t` declares (float when it declares none we know).
pub fn dtype(t: &TensorProto) -> DataType {
    DataType::try_from(t.data_type).unwrap_or(DataType::Float)
}

/// Stores `raw` (bytes of the tensor's own element type) in `t` as inline data of `dims`; other
/// data fields and any external reference are cleared.
pub fn set_raw(t: &mut TensorProto, dims: &[usize], raw: Vec<u8>) {
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.raw_data = raw;
    t.float_data.clear();
    t.int32_data.clear();
    t.int64_data.clear();
    t.double_data.clear();
    t.uint64_data.clear();
    t.external_data.clear();
    t.data_location = None;
}
