//! ONNX in and out: `import` turns a `.onnx` file (protobuf types from `tract_onnx::pb`) into our
//! `Graph`; `tensor_data` decodes initializers, with `external` mapping data stored beside the model.

mod export;
mod external;
mod import;
mod inline;
mod tensor_data;

pub use export::{files_written, save, Export};
pub use import::{load, load_any_ops, Model};

/// The range of default-domain opsets whose op forms edgetune implements: 9 to the newest that
/// onnx 1.23.2 defines. Every version change of a supported op in this range is listed in
/// docs/backend-node.md; where an op's float32 meaning changed, its builder reads `ctx.opset`
/// (or refuses the form, saying why). Raise the end only after repeating that analysis.
pub const OPSETS: std::ops::RangeInclusive<i64> = 9..=28;
