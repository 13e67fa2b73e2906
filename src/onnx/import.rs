//! ONNX file -> `Graph`. Checks everything the executor relies on: the file decodes, the opset is
//! in range, every op is known, every input has a producer, the nodes form no cycle, and every
//! tensor's data matches its dims. Nodes come out in topological order.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::pb::{self, attribute_proto::AttributeType, type_proto, ModelProto};

use super::external::ExternalFiles;
use super::inline::{self, InlineData};
use super::tensor_data;
use crate::attrs::{Attr, Attrs};
use crate::error::{Error, Result};
use crate::graph::{Const, Dim, ElemType, Graph, Initializer, Node, Source, Value, ValueDecl, ValueId};
use crate::ops;

/// An imported model: our graph plus the original protobuf (initializer data taken out) so an
/// export can write the same model back with new weights.
pub struct Model {
    pub path: PathBuf,
    pub graph: Graph,
    pub proto: ModelProto,
}

impl Model {
    /// The model file and the external data files its initializers name.
    pub fn files(&self) -> Vec<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new(""));
        let mut files = vec![self.path.clone()];
        let tensors = self.proto.graph.iter().flat_map(|g| &g.initializer);
        for e in tensors.flat_map(|t| &t.external_data).filter(|e| e.key == "location") {
            let f = dir.join(&e.value);
            if !files.contains(&f) {
                files.push(f);
            }
        }
        files
    }

    /// The value of the model's `metadata_props` entry `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.proto.metadata_props.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }

    pub fn producer(&self) -> String {
        let p = &self.proto;
        format!("{} {}", p.producer_name, p.producer_version).trim().to_string()
    }
}

/// Loads and checks an ONNX model.
pub fn load(path: &Path) -> Result<Model> {
    load_with(path, true)
}

/// `load` that keeps nodes of ops edgetune does not know (for `inspect`, which reports them;
/// such a graph cannot be planned).
pub fn load_any_ops(path: &Path) -> Result<Model> {
    load_with(path, false)
}

fn load_with(path: &Path, known_ops_only: bool) -> Result<Model> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::invalid_model(path, "is a directory, not an .onnx file"));
    }
    if meta.len() == 0 {
        return Err(Error::invalid_model(path, "the file is empty"));
    }
    // SAFETY: read-only map of a file we only decode from; see ExternalFiles::map.
    let bytes = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?);
    // Raw tensor data stays in the map (see `inline`): the decode skips it.
    let located = inline::locate(&file, &bytes);
    let to_decode: &[u8] = located.as_ref().map_or(&bytes[..], |(hidden, _)| &hidden[..]);
    let mut proto = ModelProto::decode(to_decode)
        .map_err(|e| Error::invalid_model(path, format!("not an ONNX protobuf (truncated or another format): {e}")))?;
    let inline = located.map(|(_, data)| data);
    let opset = default_opset(&proto).ok_or_else(|| {
        Error::invalid_model(path, "no default-domain opset_import (not an ONNX model, or a truncated one)")
    })?;
    if !super::OPSETS.contains(&opset) {
        return Err(Error::invalid_model(
            path,
            format!("opset {opset} is outside the supported range {}-{}", super::OPSETS.start(), super::OPSETS.end()),
        ));
    }
    let mut gp = proto.graph.take().ok_or_else(|| Error::invalid_model(path, "the model has no graph"))?;
    let graph = build_graph(&mut gp, opset, path, inline.as_ref(), known_ops_only).map_err(|e| match e {
        Fail::Model(reason) => Error::invalid_model(path, reason),
        Fail::Other(e) => e,
    })?;
    proto.graph = Some(gp);
    Ok(Model { path: path.to_path_buf(), graph, proto })
}

fn default_opset(m: &ModelProto) -> Option<i64> {
    m.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version)
}

/// Values by id and by name; each name is defined once.
#[derive(Default)]
struct Values {
    list: Vec<Value>,
    by_name: HashMap<String, ValueId>,
}

impl Values {
    fn declare(&mut self, name: &str, source: Source) -> Result<ValueId, String> {
        if self.by_name.contains_key(name) {
            return Err(format!("value '{name}' is defined more than once"));
        }
        self.list.push(Value { name: name.to_string(), source });
        self.by_name.insert(name.to_string(), self.list.len() - 1);
        Ok(self.list.len() - 1)
    }
}

enum Fail {
    Model(String),
    Other(Error),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Model(s)
    }
}

fn build_graph(
    gp: &mut pb::GraphProto,
    opset: i64,
    path: &Path,
    inline: Option<&InlineData>,
    known_ops_only: bool,
) -> Result<Graph, Fail> {
    let mut external = ExternalFiles::new(path);
    let mut values = Values::default();

    let mut initializers = Vec::with_capacity(gp.initializer.len());
    for (i, t) in gp.initializer.iter_mut().enumerate() {
        let in_file = inline.and_then(|d| d.get(i));
        let data = tensor_data::decode(t, &mut external, in_file).map_err(|e| format!("initializer: {e}"))?;
        let value = values.declare(&t.name, Source::Initializer(initializers.len()))?;
        initializers.push(Initializer { name: t.name.clone(), value, data });
    }
    let mut inputs = Vec::new();
    for vi in &gp.input {
        // Before IR 4, initializers were also listed as inputs: they stay initializers.
        if initializers.iter().any(|i| i.name == vi.name) {
            continue;
        }
        check_input_type(vi)?;
        let id = values.declare(&vi.name, Source::Input(inputs.len()))?;
        inputs.push((id, value_decl(vi)));
    }

    if known_ops_only {
        check_known_ops(&gp.node, path)?;
    }
    let order = topological_order(&gp.node, &values.by_name)?;
    let mut nodes = Vec::with_capacity(order.len());
    for &i in &order {
        let np = &mut gp.node[i];
        let name = if np.name.is_empty() { format!("{}#{i}", np.op_type) } else { np.name.clone() };
        let attrs = convert_attrs(&mut np.attribute, &mut external).map_err(|e| format!("node '{name}': {e}"))?;
        if np.op_type == "Constant" {
            let c = constant_value(&attrs).map_err(|e| format!("node '{name}' (Constant): {e}"))?;
            let out = np.output.first().ok_or_else(|| format!("node '{name}' (Constant) has no output"))?;
            values.declare(out, Source::Constant(c))?;
            continue;
        }
        let node_inputs =
            np.input.iter().map(|n| if n.is_empty() { None } else { values.by_name.get(n).copied() }).collect();
        let mut outputs = Vec::with_capacity(np.output.len());
        for (slot, out) in np.output.iter().enumerate() {
            if out.is_empty() {
                outputs
                    .push(values.declare(&format!("{name}:unused{slot}"), Source::Node { node: nodes.len(), slot })?);
            } else {
                outputs.push(values.declare(out, Source::Node { node: nodes.len(), slot })?);
            }
        }
        nodes.push(Node { name, op_type: np.op_type.clone(), inputs: node_inputs, outputs, attrs });
    }

    let mut outputs = Vec::new();
    for vi in &gp.output {
        let id = *values
            .by_name
            .get(&vi.name)
            .ok_or_else(|| format!("graph output '{}' is produced by no node, input or initializer", vi.name))?;
        outputs.push((id, value_decl(vi)));
    }
    if outputs.is_empty() {
        return Err(Fail::Model("the graph declares no outputs".into()));
    }
    Ok(Graph { values: values.list, nodes, inputs, outputs, initializers, opset })
}

/// Every op must be one edgetune knows; otherwise one error lists all the offenders.
fn check_known_ops(nodes: &[pb::NodeProto], path: &Path) -> Result<(), Fail> {
    let bad: Vec<String> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            let std_domain = n.domain.is_empty() || n.domain == "ai.onnx";
            !std_domain || !ops::is_known(&n.op_type)
        })
        .map(|(i, n)| {
            let op = if n.domain.is_empty() { n.op_type.clone() } else { format!("{}:{}", n.domain, n.op_type) };
            let name = if n.name.is_empty() { format!("#{i}") } else { n.name.clone() };
            format!("{op} (node '{name}')")
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Fail::Other(Error::Unsupported { path: path.display().to_string(), list: bad.join(", ") }))
}

/// Kahn's algorithm over node indices; reports dangling inputs and cycles by name.
fn topological_order(nodes: &[pb::NodeProto], known: &HashMap<String, ValueId>) -> Result<Vec<usize>, String> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o, i).is_some() || known.contains_key(o.as_str()) {
                return Err(format!("value '{o}' is defined more than once"));
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for input in n.input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(input.as_str()) {
                pending[i] += 1;
                users[p].push(i);
            } else if !known.contains_key(input) {
                let name = if n.name.is_empty() { format!("#{i}") } else { n.name.clone() };
                return Err(format!(
                    "node '{name}' ({}) reads '{input}', which no node, graph input or initializer produces",
                    n.op_type
                ));
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() < nodes.len() {
        let stuck: Vec<String> = (0..nodes.len())
            .filter(|&i| pending[i] > 0)
            .take(6)
            .map(|i| if nodes[i].name.is_empty() { format!("#{i}") } else { nodes[i].name.clone() })
            .collect();
        return Err(format!("the graph has a cycle through nodes {}", stuck.join(", ")));
    }
    Ok(order)
}

fn convert_attrs(list: &mut [pb::AttributeProto], external: &mut ExternalFiles) -> Result<Attrs, String> {
    let mut out = Vec::with_capacity(list.len());
    for a in list.iter_mut() {
        let kind = AttributeType::try_from(a.r#type).unwrap_or(AttributeType::Undefined);
        let attr = match kind {
            AttributeType::Int => Attr::Int(a.i),
            AttributeType::Float => Attr::Float(a.f),
            AttributeType::Ints => Attr::Ints(a.ints.clone()),
            AttributeType::Floats => Attr::Floats(a.floats.clone()),
            AttributeType::String => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
            // Decoded from a copy: the proto keeps the tensor whole, so an export writes it
            // back (attribute tensors are small: Constant values, ConstantOfShape's fill); one
            // stored as external data is taken inline, as the export cannot point back to it.
            AttributeType::Tensor => match a.t.as_mut() {
                Some(t) => {
                    let c = tensor_data::decode(&mut t.clone(), external, None)?;
                    if t.data_location == Some(DataLocation::External as i32) {
                        tensor_data::set_raw(t, c.shape(), tensor_data::encode(&c, tensor_data::dtype(t)));
                    }
                    Attr::Tensor(c)
                }
                None => Attr::Other,
            },
            // IR < 2 files leave the type out: infer it from the populated field.
            AttributeType::Undefined => match () {
                _ if !a.ints.is_empty() => Attr::Ints(a.ints.clone()),
                _ if !a.floats.is_empty() => Attr::Floats(a.floats.clone()),
                _ if !a.s.is_empty() => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
                _ if a.f != 0.0 => Attr::Float(a.f),
                _ => Attr::Int(a.i),
            },
            _ => Attr::Other,
        };
        out.push((a.name.clone(), attr));
    }
    Ok(Attrs(out))
}

fn constant_value(attrs: &Attrs) -> Result<Const, String> {
    use crate::graph::IntTensor;
    use crate::tensor::Tensor;
    if let Some(t) = attrs.tensor("value")? {
        return Ok(t.clone());
    }
    match attrs.0.first().map(|(n, a)| (n.as_str(), a)) {
        Some(("value_float", Attr::Float(f))) => Ok(Const::F32(Tensor::scalar(*f))),
        Some(("value_floats", Attr::Floats(v))) => Ok(Const::F32(Tensor::from_vec([v.len()], v.clone()))),
        Some(("value_int", Attr::Int(i))) => Ok(Const::I64(IntTensor { shape: vec![], data: vec![*i] })),
        Some(("value_ints", Attr::Ints(v))) => Ok(Const::I64(IntTensor::vector(v.clone()))),
        _ => Err("no supported value attribute (value, value_float(s), value_int(s))".into()),
    }
}

/// A graph input must be a float tensor: edgetune feeds float32 (float16 and double inputs take
/// float32 values too); integers exist only as constants. No declared type at all is accepted.
fn check_input_type(vi: &pb::ValueInfoProto) -> Result<(), String> {
    let Some(t) = vi.r#type.as_ref() else { return Ok(()) };
    // tract's TypeProto knows tensor types only: a sequence, map or optional type decodes empty.
    let Some(type_proto::Value::TensorType(tensor)) = t.value.as_ref() else {
        return Err(format!("graph input '{}' is not a tensor (a sequence, map or optional type)", vi.name));
    };
    match pb::tensor_proto::DataType::try_from(tensor.elem_type) {
        Ok(pb::tensor_proto::DataType::Undefined | pb::tensor_proto::DataType::Float)
        | Ok(pb::tensor_proto::DataType::Float16 | pb::tensor_proto::DataType::Double) => Ok(()),
        other => Err(format!(
            "graph input '{}' has element type {}: edgetune's inputs are float tensors",
            vi.name,
            other.map_or_else(|_| tensor.elem_type.to_string(), |d| d.as_str_name().to_string())
        )),
    }
}

fn value_decl(vi: &pb::ValueInfoProto) -> ValueDecl {
    let tensor = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => Some(t),
        _ => None,
    };
    let elem = match tensor.map(|t| t.elem_type) {
        Some(1) | None => ElemType::F32,
        Some(other) => ElemType::Other(other),
    };
    let dims = tensor.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => Dim::Symbolic(p.clone()),
                _ => Dim::Symbolic(String::new()),
            })
            .collect()
    });
    ValueDecl { name: vi.name.clone(), elem, dims }
}
