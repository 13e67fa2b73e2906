//! Node attributes with typed getters and defaults, so each op reads its attributes in a few
//! declarative lines instead of a match over protobuf fields.

use crate::graph::Const;

#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Tensor(Const),
    /// A kind we never read (graphs, sparse tensors, type protos).
    Other,
}

#[derive(Clone, Debug, Default)]
pub struct Attrs(pub Vec<(String, Attr)>);

/// Why an attribute could not be read; the caller adds the node's name.
pub type AttrResult<T> = Result<T, String>;

impl Attrs {
    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> AttrResult<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(wrong_kind(name, "an int", other)),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> AttrResult<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f32),
            Some(other) => Err(wrong_kind(name, "a float", other)),
        }
    }

    pub fn ints(&self, name: &str) -> AttrResult<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(wrong_kind(name, "a list of ints", other)),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> AttrResult<String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(Attr::Str(s)) => Ok(s.clone()),
            Some(other) => Err(wrong_kind(name, "a string", other)),
        }
    }

    pub fn tensor(&self, name: &str) -> AttrResult<Option<&Const>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(wrong_kind(name, "a tensor", other)),
        }
    }
}

fn wrong_kind(name: &str, want: &str, got: &Attr) -> String {
    let got = match got {
        Attr::Int(_) => "int",
        Attr::Float(_) => "float",
        Attr::Ints(_) => "ints",
        Attr::Floats(_) => "floats",
        Attr::Str(_) => "string",
        Attr::Tensor(_) => "tensor",
        Attr::Other => "another kind",
    };
    format!("attribute '{name}' should be {want}, found {got}")
}
