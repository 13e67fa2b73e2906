//! `--size HxW` parsing and the first input seen as an image (both owned by the library).

pub use crate::data::image::parse_size;
pub use crate::exec::image_input;
