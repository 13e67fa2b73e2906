//! How a model's first input looks (layout, channels, default size).

pub use crate::data::image::parse_size;
use crate::data::image::Layout;
use crate::error::{Error, Result};
use crate::exec::{channel_axis, declared_size};
use crate::graph::{Dim, Graph};

/// The first graph input seen as an image batch.
pub struct ImageInput {
    pub layout: Layout,
    pub channels: usize,
    /// Declared spatial size if fixed, else 224x224.
    pub size: [usize; 2],
}

pub fn image_input(graph: &Graph) -> Result<ImageInput> {
    let (_, decl) = graph.inputs.first().ok_or_else(|| Error::Usage("the model has no input".into()))?;
    let dims = decl.dims.as_deref().unwrap_or(&[]);
    let c = channel_axis(dims).ok_or_else(|| {
        Error::data(format!("input '{}'", decl.name), "is not an image batch (rank 4 with a fixed channel count)")
    })?;
    let Dim::Fixed(channels) = dims[c] else { unreachable!("channel_axis returns a fixed axis") };
    let layout = if c == 1 { Layout::Nchw } else { Layout::Nhwc };
    Ok(ImageInput { layout, channels, size: declared_size(dims).unwrap_or([224, 224]) })
}
