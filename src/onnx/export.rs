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
use crate::exec::{example_shape, plan, spatial_axes};
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
/// temporary name, its data beside it under another) before anything lands. With external
/// data, the data file takes its name only after the check, right before the model takes its
/// own: a failed check leaves an existing output and its data as they were.
pub fn save(model: &Model, export: &Export, path: &Path, check: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut proto = model.proto.clone();
    let graph = proto.graph.as_mut().ok_or_else(|| Error::Runtime("model without graph".into()))?;
    let input_dims = declared_input(&model.graph, export.input_size);
    restate_shapes(&model.graph, graph, input_dims.as_deref());
    set_metadata(&mut proto.metadata_props, &export.metadata);

    let graph = proto.graph.as_mut().expect("checked above");
    let data_name = data_file_name(path);
    let Some(blob) = write_initializers(&model.graph, graph, export.values, &data_name)? else {
        let bytes = proto.encode_to_vec();
        return write_checked(path, |w| w.write_all(&bytes), check);
    };
    let pid = std::process::id();
    let staged_name = format!(".{data_name}.tmp-{pid}");
    let (staged, probe) = (path.with_file_name(&staged_name), path.with_file_name(format!(".{data_name}.check-{pid}")));
    let result = (|| {
        write_atomic(&staged, |w| w.write_all(&blob))?;
        set_location(&mut proto, &staged_name);
        let checked = proto.encode_to_vec();
        write_atomic(&probe, |w| w.write_all(&checked))?;
        check(&probe)?;
        set_location(&mut proto, &data_name);
        let bytes = proto.encode_to_vec();
        let data_path = path.with_file_name(&data_name);
        write_checked(
            path,
            |w| w.write_all(&bytes),
            |_| std::fs::rename(&staged, &data_path).map_err(|e| Error::io(&data_path, e)),
        )
    })();
    let _ = std::fs::remove_file(&probe);
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

/// Points every external initializer of `proto` at the data file `name`.
fn set_location(proto: &mut tract_onnx::pb::ModelProto, name: &str) {
    let tensors = proto.graph.iter_mut().flat_map(|g| g.initializer.iter_mut());
    for e in tensors.flat_map(|t| t.external_data.iter_mut()).filter(|e| e.key == "location") {
        e.value = name.to_string();
    }
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
    if let (Some([ha, wa]), Some([h, w])) = (spatial_axes(&dims), size) {
        dims[ha] = Dim::Fixed(h);
        dims[wa] = Dim::Fixed(w);
    }
    Some(dims)
}

/// Restates every graph input (initializers listed as inputs included), `value_info` entry and
/// output with the shapes of a plan of the exported graph at the trained size (`input_dims` for
/// the first input): only dims declared as fixed numbers change; symbolic and unknown dims stay
/// as they are. A `value_info` entry the plan cannot restate is dropped (it is optional), an
/// output's shape is left undeclared; if the graph cannot be planned, every `value_info` entry
/// is dropped and no output declares a shape.
fn restate_shapes(ours: &Graph, graph: &mut GraphProto, input_dims: Option<&[Dim]>) {
    let shapes: Vec<Vec<usize>> = ours
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (_, decl))| {
            let dims = if i == 0 { input_dims.map(<[Dim]>::to_vec) } else { decl.dims.clone() };
            example_shape(&dims.unwrap_or_default(), None)
        })
        .collect();
    let Ok(p) = plan::plan(ours, &shapes) else {
        graph.value_info.clear();
        graph.output.iter_mut().for_each(undeclare_shape);
        return;
    };
    let ids: HashMap<&str, usize> = ours.values.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect();
    let planned = |name: &str| ids.get(name).and_then(|&v| p.shapes.get(v).cloned().flatten());
    for vi in graph.input.iter_mut() {
        if let Some(s) = planned(&vi.name) {
            restate(vi, &s);
        }
    }
    graph.value_info.retain_mut(|vi| planned(&vi.name).is_some_and(|s| restate(vi, &s)));
    for vi in graph.output.iter_mut() {
        if let Some(s) = planned(&vi.name) {
            if !restate(vi, &s) {
                undeclare_shape(vi);
            }
        }
    }
}

/// Sets the dims of `vi` declared as fixed numbers to `shape`; false when the ranks differ.
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
        if matches!(d.value, Some(DimValue::DimValue(_))) {
            d.value = Some(DimValue::DimValue(n as i64));
        }
    }
    true
}

/// Leaves the shape of `vi` undeclared (its element type stays).
fn undeclare_shape(vi: &mut ValueInfoProto) {
    if let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.shape = None;
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
