//! How images become a model's input, as the model itself records it in `metadata_props`:
//! `preprocess` (unit | imagenet | caffe), `input_size` (`HxW`), `resize` (stretch | crop) and
//! `classes` (a JSON array of class names in output order). `finetune` writes them; `infer` and `finetune` use them as their
//! defaults (explicit flags win). Unknown or malformed values are ignored, as if absent: they
//! may come from other tools.

use super::image::{Preprocess, Resize};
use crate::onnx::Model;

pub const PREPROCESS: &str = "preprocess";
pub const INPUT_SIZE: &str = "input_size";
pub const RESIZE: &str = "resize";
pub const CLASSES: &str = "classes";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recipe {
    pub preprocess: Option<Preprocess>,
    pub input_size: Option<[usize; 2]>,
    pub resize: Option<Resize>,
    pub classes: Option<Vec<String>>,
}

impl Recipe {
    /// What `model` records about its inputs.
    pub fn of(model: &Model) -> Recipe {
        let preprocess = model.metadata(PREPROCESS).and_then(|v| v.parse().ok());
        let input_size = model.metadata(INPUT_SIZE).and_then(|v| super::image::parse_size(v).ok());
        let resize = model.metadata(RESIZE).and_then(|v| v.parse().ok());
        let classes =
            model.metadata(CLASSES).and_then(|v| serde_json::from_str::<Vec<String>>(v).ok()).filter(|c| !c.is_empty());
        Recipe { preprocess, input_size, resize, classes }
    }

    /// The `metadata_props` entries that record this recipe (a `None` field leaves its key as
    /// the model had it).
    pub fn to_metadata(&self) -> Vec<(String, Option<String>)> {
        let preprocess = self.preprocess.map(|p| p.to_string());
        let size = self.input_size.map(|[h, w]| format!("{h}x{w}"));
        let resize = self.resize.map(|r| r.to_string());
        let classes = self.classes.as_ref().map(|c| serde_json::Value::from(c.clone()).to_string());
        let entries = [(PREPROCESS, preprocess), (INPUT_SIZE, size), (RESIZE, resize), (CLASSES, classes)];
        entries.into_iter().filter(|(_, v)| v.is_some()).map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_what_it_records() {
        let r = Recipe {
            preprocess: Some(Preprocess::Caffe),
            input_size: Some([64, 48]),
            resize: Some(Resize::Crop),
            classes: Some(vec!["cat".into(), "dog \"x\"".into()]),
        };
        let m = r.to_metadata();
        assert_eq!(m[0], ("preprocess".into(), Some("caffe".into())));
        assert_eq!(m[1], ("input_size".into(), Some("64x48".into())));
        assert_eq!(m[2], ("resize".into(), Some("crop".into())));
        assert_eq!(m[3], ("classes".into(), Some(r#"["cat","dog \"x\""]"#.into())));
        // What is not known is not written: the model's own entry stays.
        assert_eq!(Recipe { input_size: Some([8, 8]), ..Recipe::default() }.to_metadata().len(), 1);
    }
}
