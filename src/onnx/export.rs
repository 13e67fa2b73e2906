//! Graph -> ONNX file: the imported ModelProto with new initializer contents. Node order, names,
//! Constant nodes and attribute tensors, opset and metadata stay as they were. Each initializer
//! is written from its new value where given, else as loaded, and stays where the input kept it:
//! embedded (little-endian raw data), or in one `<output>.data` file beside the output (64-byte
//! aligned, so it can be memory-mapped). What training changed about the model is declared:
//! the input's spatial size, every `value_info` and output shape (restated from a plan of the
//! exported graph), and `metadata_props`. Each file is written atomically, data before model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::{type_proto, GraphProto, StringStringEntryProto, ValueInfoProto};

use super::tensor_data;
use super::Model;
use crate::atomic::{write_atomic, write_checked};
use crate::error::{Error, Result};
use crate::exec::{channel_axis, plan};
use crate::graph::{Const, Dim, Graph};
use crate::tensor::Tensor;

/// What an export writes besides the loaded model.
#[derive(Default)]
pub struct Export<'a> {
    /// New contents of initializers, by ONNX name (shapes may differ only where the graph's
    /// own initializer changed shape too, e.g. a replaced head).
    pub values: &'a [(String, Tensor)],
    /// The spatial size (H, W) the model was trained at: the first input declares it.
    pub input_size: Option<[usize; 2]>,
    /// `metadata_props` entries to set (`Some`) or remove (`None`), by key.
    pub metadata: Vec<(String, Option<String>)>,
}

/// The files `save` writes for `model` at `path`: the model, and its data file where the input
/// kept tensors as external data.
pub fn files_written(model: &Model, path: &Path) -> Vec<PathBuf> {
    let external = model.proto.graph.iter().flat_map(|g| &g.initializer).any(is_external);
    let mut files = vec![path.to_path_buf()];
    if external {
        files.push(path.with_file_name(data_file_name(path)));
    }
    files
}

fn data_file_name(path: &Path) -> String {
    format!("{}.data", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

fn is_external(t: &tract_onnx::pb::TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32)
}

/// Writes `model` to `path` as `export` says; `check` sees the complete model file (under a
/// temporary name, its data already in place) before it lands.
pub fn save(model: &Model, export: &Export, path: &Path, check: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut proto = model.proto.clone();
    let graph = proto.graph.as_mut().ok_or_else(|| Error::Runtime("model without graph".into()))?;
    let input_dims = declared_input(&model.graph, export.input_size);
    restate_shapes(&model.graph, graph, input_dims.as_deref());
    set_metadata(&mut proto.metadata_props, &export.metadata);

    let graph = proto.graph.as_mut().expect("checked above");
    let data_name = data_file_name(path);
    let blob = write_initializers(&model.graph, graph, export.values, &data_name)?;
    if let Some(blob) = blob {
        write_atomic(&path.with_file_name(&data_name), |w| w.write_all(&blob))?;
    }
    let bytes = proto.encode_to_vec();
    write_checked(path, |w| w.write_all(&bytes), check)
}

/// Fills every initializer of `graph` (new value, else the loaded one); those the input kept
/// as external data go into one blob, returned when there is any.
fn write_initializers(
    ours: &Graph,
    graph: &mut GraphProto,
    values: &[(String, Tensor)],
    data_name: &str,
) -> Result<Option<Vec<u8>>> {
    let updated: HashMap<&str, &Tensor> = values.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let loaded: HashMap<&str, &Const> = ours.initializers.iter().map(|i| (i.name.as_str(), &i.data)).collect();
    let mut blob: Option<Vec<u8>> = None;
    for t in graph.initializer.iter_mut() {
        let external = is_external(t);
        let dtype = tensor_data::dtype(t);
        let (dims, raw) = match (updated.get(t.name.as_str()), loaded.get(t.name.as_str())) {
            (Some(new), _) => (new.shape().to_vec(), tensor_data::encode_floats(new.data(), dtype)),
            (None, Some(old)) => (old.shape().to_vec(), tensor_data::encode(old, dtype)),
            (None, None) => return Err(Error::Runtime(format!("initializer '{}' has no data to write", t.name))),
        };
        tensor_data::set_raw(t, &dims, raw);
        if external {
            let blob = blob.get_or_insert_with(Vec::new);
            let offset = blob.len().next_multiple_of(64);
            blob.resize(offset, 0);
            blob.append(&mut t.raw_data);
            let entry = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v };
            t.external_data = vec![
                entry("location", data_name.to_string()),
                entry("offset", offset.to_string()),
                entry("length", (blob.len() - offset).to_string()),
            ];
            t.data_location = Some(DataLocation::External as i32);
        }
    }
    Ok(blob)
}

/// The first input's declared dims with the spatial ones set to `size` (when it is an image
/// batch and a size is given).
fn declared_input(graph: &Graph, size: Option<[usize; 2]>) -> Option<Vec<Dim>> {
    let mut dims = graph.inputs.first()?.1.dims.clone()?;
    if let (Some(c), Some([h, w])) = (channel_axis(&dims), size) {
        let hw = if c == 1 { [2, 3] } else { [1, 2] };
        dims[hw[0]] = Dim::Fixed(h);
        dims[hw[1]] = Dim::Fixed(w);
    }
    Some(dims)
}

/// Restates the first input (`input_dims`), every `value_info` entry and every output with the
/// shapes of a plan of the exported graph: a symbolic dim stays symbolic, a fixed one takes the
/// planned size. Entries the plan cannot restate are dropped (`value_info` is optional); if
/// the graph cannot be planned at the declared size, every `value_info` entry is dropped.
fn restate_shapes(ours: &Graph, graph: &mut GraphProto, input_dims: Option<&[Dim]>) {
    if let (Some(dims), Some((_, decl))) = (input_dims, ours.inputs.first()) {
        if let Some(vi) = graph.input.iter_mut().find(|vi| vi.name == decl.name) {
            restate(vi, &dims.iter().map(|d| if let Dim::Fixed(n) = d { *n } else { 1 }).collect::<Vec<_>>());
        }
    }
    let shapes: Vec<Vec<usize>> = ours
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (_, decl))| {
            let dims = if i == 0 { input_dims.map(<[Dim]>::to_vec) } else { decl.dims.clone() };
            // A symbolic dim is planned at 1 (the batch) or 224 (a free image side).
            dims.unwrap_or_default().iter().enumerate().map(|(k, d)| concrete(d, k)).collect()
        })
        .collect();
    let Ok(p) = plan::plan(ours, &shapes) else {
        graph.value_info.clear();
        return;
    };
    let ids: HashMap<&str, usize> = ours.values.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect();
    let planned = |name: &str| ids.get(name).and_then(|&v| p.shapes.get(v).cloned().flatten());
    graph.value_info.retain_mut(|vi| planned(&vi.name).is_some_and(|s| restate(vi, &s)));
    for vi in graph.output.iter_mut() {
        if let Some(s) = planned(&vi.name) {
            if !restate(vi, &s) {
                set_dims(vi, &s);
            }
        }
    }
}

fn concrete(d: &Dim, axis: usize) -> usize {
    match d {
        Dim::Fixed(n) => *n,
        Dim::Symbolic(_) if axis == 0 => 1,
        Dim::Symbolic(_) => 224,
    }
}

/// Sets the fixed dims of `vi` to `shape`, keeping symbolic ones; false when the ranks differ.
/// A value declared without a shape stays so.
fn restate(vi: &mut ValueInfoProto, shape: &[usize]) -> bool {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
        return true;
    };
    let Some(s) = t.shape.as_mut() else { return true };
    if s.dim.len() != shape.len() {
        return false;
    }
    for (d, &n) in s.dim.iter_mut().zip(shape) {
        if !matches!(d.value, Some(DimValue::DimParam(_))) {
            d.value = Some(DimValue::DimValue(n as i64));
        }
    }
    true
}

/// Replaces the declared shape of `vi` by `shape`.
fn set_dims(vi: &mut ValueInfoProto, shape: &[usize]) {
    if let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        let dim = shape
            .iter()
            .map(|&n| tract_onnx::pb::tensor_shape_proto::Dimension {
                value: Some(DimValue::DimValue(n as i64)),
                ..Default::default()
            })
            .collect();
        t.shape = Some(tract_onnx::pb::TensorShapeProto { dim });
    }
}

fn set_metadata(props: &mut Vec<StringStringEntryProto>, changes: &[(String, Option<String>)]) {
    for (key, value) in changes {
        props.retain(|p| &p.key != key);
        if let Some(v) = value {
            props.push(StringStringEntryProto { key: key.clone(), value: v.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_set_replaced_and_removed_by_key() {
        let entry = |k: &str, v: &str| StringStringEntryProto { key: k.into(), value: v.into() };
        let mut props = vec![entry("source", "npm"), entry("classes", "[\"a\"]"), entry("preprocess", "caffe")];
        let changes = vec![
            ("classes".to_string(), None),
            ("preprocess".to_string(), Some("unit".to_string())),
            ("input_size".to_string(), Some("64x64".to_string())),
        ];
        set_metadata(&mut props, &changes);
        let got: Vec<(&str, &str)> = props.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
        assert_eq!(got, [("source", "npm"), ("preprocess", "unit"), ("input_size", "64x64")]);
    }
}
