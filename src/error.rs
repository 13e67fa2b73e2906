//! The one error type of the crate. Every variant renders as a single line that names the
//! file, node, op or value at fault; the CLI maps it onto its exit codes (`cli::exit_code`).

use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a usable ONNX model (empty, truncated, not protobuf, inconsistent graph).
    #[error("{path}: invalid model: {reason}")]
    InvalidModel { path: String, reason: String },

    /// One or more nodes use ops edgetune does not implement; every one is listed.
    #[error("{path}: unsupported op(s): {list}")]
    Unsupported { path: String, list: String },

    /// A node's attributes or inputs do not fit its op (bad shape, missing constant ...).
    #[error("node '{node}' ({op}): {msg}")]
    Node { node: String, op: String, msg: String },

    /// User data (arrays, images, labels) that does not fit the model or the format.
    #[error("{what}: {msg}")]
    Data { what: String, msg: String },

    /// Options or a configuration that cannot work (an option naming nothing, a checkpoint
    /// past the run, an output that would replace the input ...).
    #[error("{0}")]
    Config(String),

    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },

    /// A value became NaN or infinite (reported with the tensor that first did).
    #[error("non-finite value: {0}")]
    NonFinite(String),

    /// Anything else that went wrong while running (not the user's input).
    #[error("{0}")]
    Runtime(String),

    /// `--device cuda` where CUDA cannot run (not built in, no driver, no GPU).
    #[error("{0}")]
    Device(String),

    /// A run was stopped on request (its observer, Ctrl-C in the CLI); the message says what
    /// was saved.
    #[error("{0}")]
    Stopped(String),
}

impl Error {
    pub fn invalid_model(path: &Path, reason: impl Into<String>) -> Self {
        Error::InvalidModel { path: path.display().to_string(), reason: reason.into() }
    }

    pub fn node(node: impl Into<String>, op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Node { node: node.into(), op: op.into(), msg: msg.into() }
    }

    pub fn data(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Data { what: what.into(), msg: msg.into() }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
}
