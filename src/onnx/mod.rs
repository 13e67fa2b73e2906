//! ONNX in and out: `import` turns a `.onnx` file (protobuf types from `tract_onnx::pb`) into our
//! `Graph`; `tensor_data` decodes initializers, with `external` mapping data stored beside the model.

mod export;
mod external;
mod import;
mod inline;
mod tensor_data;

pub use export::{files_written, save, Export};
pub use import::{load, load_any_ops, Model};

/// The range of default-domain opsets whose op forms edgetune implements.
pub const OPSETS: std::ops::RangeInclusive<i64> = 9..=21;
