//! Images into model inputs: decode (PNG/JPEG through `image`), resize, preprocess, lay out.
//!
//! Presets: `imagenet` — RGB scaled to [0,1], minus mean [0.485, 0.456, 0.406], over std
//! [0.229, 0.224, 0.225] (torchvision); `caffe` — BGR, minus [103.939, 116.779, 123.68], no scaling
//! (Keras ResNet50); `unit` — RGB scaled to [0,1]. Grayscale models get the luma channel.

use std::path::Path;

use image::imageops::FilterType;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preprocess {
    Imagenet,
    Caffe,
    Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// One image as `channels` planes of `h×w` floats (channel-major), preprocessed.
pub fn load_image(path: &Path, [h, w]: [usize; 2], channels: usize, pre: Preprocess) -> Result<Vec<f32>> {
    let img =
        image::open(path).map_err(|e| Error::data(path.display().to_string(), format!("cannot read image: {e}")))?;
    let img = img.resize_exact(w as u32, h as u32, FilterType::Triangle);
    let plane = h * w;
    let mut out = vec![0.0f32; channels * plane];
    match channels {
        1 => {
            for (i, p) in img.to_luma8().pixels().enumerate() {
                out[i] = p.0[0] as f32;
            }
        }
        3 => {
            for (i, p) in img.to_rgb8().pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = p.0[c] as f32;
                }
            }
        }
        n => {
            return Err(Error::data(
                path.display().to_string(),
                format!("the model takes {n} channels; images give 1 or 3"),
            ))
        }
    }
    preprocess(&mut out, channels, plane, pre);
    Ok(out)
}

/// Applies a preset in place to channel-major RGB (or gray) values in 0..=255.
pub fn preprocess(x: &mut [f32], channels: usize, plane: usize, pre: Preprocess) {
    const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
    const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
    match pre {
        Preprocess::Unit => x.iter_mut().for_each(|v| *v /= 255.0),
        Preprocess::Imagenet => {
            for (c, p) in x.chunks_mut(plane).enumerate() {
                let (m, s) = if channels == 3 { (IMAGENET_MEAN[c], IMAGENET_STD[c]) } else { (0.449, 0.226) };
                p.iter_mut().for_each(|v| *v = (*v / 255.0 - m) / s);
            }
        }
        Preprocess::Caffe => {
            if channels == 3 {
                let (r, rest) = x.split_at_mut(plane);
                r.swap_with_slice(&mut rest[plane..2 * plane]);
            }
            for (c, p) in x.chunks_mut(plane).enumerate() {
                let m = if channels == 3 { CAFFE_MEAN_BGR[c] } else { 116.779 };
                p.iter_mut().for_each(|v| *v -= m);
            }
        }
    }
}

/// A batch of images as one input tensor in the model's layout.
pub fn load_batch(
    paths: &[impl AsRef<Path>],
    size: [usize; 2],
    channels: usize,
    pre: Preprocess,
    layout: Layout,
) -> Result<Tensor> {
    let plane = size[0] * size[1];
    let mut data = Vec::with_capacity(paths.len() * channels * plane);
    for p in paths {
        let chw = load_image(p.as_ref(), size, channels, pre)?;
        match layout {
            Layout::Nchw => data.extend_from_slice(&chw),
            Layout::Nhwc => data
                .extend((0..plane).flat_map(|i| (0..channels).map(move |c| (c, i))).map(|(c, i)| chw[c * plane + i])),
        }
    }
    let n = paths.len();
    let shape = match layout {
        Layout::Nchw => vec![n, channels, size[0], size[1]],
        Layout::Nhwc => vec![n, size[0], size[1], channels],
    };
    Ok(Tensor::from_vec(shape, data))
}

/// Class names: one per line, or a JSON object `{"0": "tench", ...}` / array.
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: &str| Error::data(path.display().to_string(), msg.to_string());
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(&format!("invalid JSON labels: {e}")))?;
        return match v {
            serde_json::Value::Array(a) => {
                Ok(a.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_string)).collect())
            }
            serde_json::Value::Object(o) => {
                let mut pairs: Vec<(usize, String)> = o
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.parse::<usize>().map_err(|_| bad("label keys must be class indices"))?,
                            v.as_str().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect::<Result<_>>()?;
                pairs.sort();
                Ok(pairs.into_iter().map(|(_, s)| s).collect())
            }
            _ => Err(bad("labels JSON must be an object or an array")),
        };
    }
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// Parses `HxW` (or a single `N` for a square).
pub fn parse_size(s: &str) -> std::result::Result<[usize; 2], String> {
    let parts: Vec<&str> = s.split(['x', 'X']).collect();
    let nums: Vec<usize> = parts
        .iter()
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("'{s}' is not HxW"))?;
    match nums[..] {
        [n] if n > 0 => Ok([n, n]),
        [h, w] if h > 0 && w > 0 => Ok([h, w]),
        _ => Err(format!("'{s}' is not HxW with positive sizes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caffe_swaps_to_bgr_and_subtracts_the_mean() {
        // One pixel, RGB = (10, 20, 30) -> BGR (30, 20, 10) minus (103.939, 116.779, 123.68).
        let mut x = vec![10.0, 20.0, 30.0];
        preprocess(&mut x, 3, 1, Preprocess::Caffe);
        let want = [30.0 - 103.939, 20.0 - 116.779, 10.0 - 123.68];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-4);
        }
        let mut y = vec![255.0, 0.0, 127.5];
        preprocess(&mut y, 3, 1, Preprocess::Imagenet);
        assert!((y[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
    }
}
