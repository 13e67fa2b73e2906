//! Images into model inputs: decode (PNG, JPEG, BMP, WebP through `image`), resize, preprocess,
//! lay out. One loader for every image file (folder datasets, `infer --image`).
//!
//! Presets: `imagenet` — RGB scaled to [0,1], minus mean [0.485, 0.456, 0.406], over std
//! [0.229, 0.224, 0.225] (torchvision); `caffe` — BGR, minus [103.939, 116.779, 123.68], no scaling
//! (Keras ResNet50); `unit` — RGB scaled to [0,1]. Grayscale models get the luma channel.

use std::path::Path;

use image::imageops::FilterType;
use image::DynamicImage;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

crate::choices::choices! {
    /// Pixel preprocessing presets (see the module's docs).
    pub enum Preprocess {
        /// RGB / 255, minus the ImageNet mean, over its std (torchvision).
        Imagenet = "imagenet",
        /// BGR minus [103.939, 116.779, 123.68], no scaling (Keras ResNet50).
        Caffe = "caffe",
        /// RGB / 255.
        Unit = "unit",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

crate::choices::choices! {
    /// How an image is brought to the model's input size.
    pub enum Resize (default Stretch) {
        /// Scaled to exactly HxW; the aspect ratio is not kept.
        Stretch = "stretch",
        /// Scaled (aspect ratio kept) until it covers HxW, then the centre HxW cut out (for a
        /// square size, torchvision's Resize(size) + CenterCrop(size)).
        Crop = "crop",
    }
}

/// How images become model inputs.
#[derive(Clone, Copy, Debug)]
pub struct Prep {
    pub channels: usize,
    pub size: [usize; 2],
    pub preprocess: Preprocess,
    /// The model's input layout: batches are built NCHW and transposed for an NHWC model.
    pub layout: Layout,
    pub resize: Resize,
}

/// Decodes an image file (its format from its contents).
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let cannot = |e: &dyn std::fmt::Display| Error::data(path.display().to_string(), format!("cannot read image: {e}"));
    let reader = image::ImageReader::open(path).map_err(|e| cannot(&e))?;
    reader.with_guessed_format().map_err(|e| cannot(&e))?.decode().map_err(|e| cannot(&e))
}

/// One image file as `prep.channels` planes of the model's size (channel-major), preprocessed.
pub fn load_image(path: &Path, prep: &Prep) -> Result<Vec<f32>> {
    planes(&decode(path)?, prep, path)
}

/// A decoded image as `prep.channels` planes of `prep.size` (channel-major), preprocessed;
/// `path` names it in errors.
pub fn planes(img: &DynamicImage, prep: &Prep, path: &Path) -> Result<Vec<f32>> {
    let img = fit(img, prep.size, prep.resize);
    let (channels, plane) = (prep.channels, prep.size[0] * prep.size[1]);
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
    preprocess(&mut out, channels, plane, prep.preprocess);
    Ok(out)
}

/// Brings `img` to `[h, w]` (its colour type kept).
pub fn fit(img: &DynamicImage, [h, w]: [usize; 2], mode: Resize) -> DynamicImage {
    let scaled = |img: &DynamicImage, [nh, nw]: [usize; 2]| {
        if [img.height() as usize, img.width() as usize] == [nh, nw] {
            img.clone()
        } else {
            img.resize_exact(nw as u32, nh as u32, FilterType::Triangle)
        }
    };
    let src = [img.height() as usize, img.width() as usize];
    match mode {
        Resize::Stretch => scaled(img, [h, w]),
        // An image with no pixels (idx data may declare 0 rows) has no centre: blank, as stretched.
        Resize::Crop if src.contains(&0) => scaled(img, [h, w]),
        Resize::Crop => {
            let [nh, nw] = cover_size(src, [h, w]);
            // Resize-then-crop (torchvision's order) unless the scaled image would be far larger
            // than the target (a strip of 1x10000 pixels would scale to 224x2240000): then the
            // centre band of the source with the target's aspect ratio, scaled (the same pixels
            // within sub-pixel alignment, and bounded memory).
            if nh * nw <= MAX_COVER_AREA * h * w {
                let r = scaled(img, [nh, nw]);
                r.crop_imm(centre_offset(nw, w) as u32, centre_offset(nh, h) as u32, w as u32, h as u32)
            } else {
                let [bh, bw] = band_size(src, [h, w]);
                let band = img.crop_imm(
                    centre_offset(src[1], bw) as u32,
                    centre_offset(src[0], bh) as u32,
                    bw as u32,
                    bh as u32,
                );
                scaled(&band, [h, w])
            }
        }
    }
}

/// How many times the target's area a scaled image may take before `fit` crops the source first.
const MAX_COVER_AREA: usize = 8;

/// The size `[h, w]` scales to (aspect ratio kept) to just cover `[th, tw]`: the side with the
/// larger ratio matches, the other is truncated as torchvision's `Resize` does
/// (`int(size * long / short)`; in integers, which is the same value for any image size).
pub fn cover_size([h, w]: [usize; 2], [th, tw]: [usize; 2]) -> [usize; 2] {
    if th * w >= tw * h {
        [th, th * w / h]
    } else {
        [tw * h / w, tw]
    }
}

/// The centre part of `[h, w]` with the aspect ratio of `[th, tw]` (at least 1 pixel each way).
fn band_size([h, w]: [usize; 2], [th, tw]: [usize; 2]) -> [usize; 2] {
    if th * w >= tw * h {
        [h, ((h * tw) as f64 / th as f64).round().clamp(1.0, w as f64) as usize]
    } else {
        [((w * th) as f64 / tw as f64).round().clamp(1.0, h as f64) as usize, w]
    }
}

/// Where a centred `t` starts in `n`: torchvision's `int(round((n - t) / 2.0))`, Python's round
/// (halves to even: a difference of 1 starts at 0, 3 at 2, 5 at 2).
pub fn centre_offset(n: usize, t: usize) -> usize {
    ((n - t) as f64 / 2.0).round_ties_even() as usize
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

/// A batch of image files as one input tensor in the model's layout; a file that does not
/// decode is an error naming it.
pub fn load_batch(paths: &[impl AsRef<Path>], prep: &Prep) -> Result<Tensor> {
    let (size, channels) = (prep.size, prep.channels);
    let plane = size[0] * size[1];
    // The batch, one image's planes and its decoded pixels at the target size.
    let need = (paths.len() + 2).saturating_mul(channels.max(3)).saturating_mul(plane).saturating_mul(4);
    crate::memory::check_fits(need, || format!("{} image(s) at {}x{}", paths.len(), size[0], size[1]))?;
    let mut data = Vec::with_capacity(paths.len() * channels * plane);
    for p in paths {
        let chw = load_image(p.as_ref(), prep)?;
        match prep.layout {
            Layout::Nchw => data.extend_from_slice(&chw),
            Layout::Nhwc => data
                .extend((0..plane).flat_map(|i| (0..channels).map(move |c| (c, i))).map(|(c, i)| chw[c * plane + i])),
        }
    }
    let n = paths.len();
    let shape = match prep.layout {
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
    #[test]
    fn crop_sizes_and_offsets_are_torchvisions() {
        // torchvision 0.29.2 on PIL images: Resize(224) gives these (h, w); CenterCrop(8) of an
        // 8-row image W columns wide keeps columns from 0 (W 9), 1 (10), 2 (11, 12, 13), 4 (15).
        let resized = [
            ([375, 500], [224, 298]),
            ([500, 333], [336, 224]),
            ([224, 224], [224, 224]),
            ([100, 101], [224, 226]),
            ([333, 500], [224, 336]),
            ([480, 640], [224, 298]),
            ([1000, 3], [74666, 224]),
        ];
        for (src, want) in resized {
            assert_eq!(cover_size(src, [224, 224]), want, "{src:?}");
        }
        for (w, first) in [(9, 0), (10, 1), (11, 2), (12, 2), (13, 2), (15, 4)] {
            assert_eq!(centre_offset(w, 8), first, "width {w}");
        }
    }

    #[test]
    fn an_extreme_strip_is_cropped_in_bounded_memory() {
        // 1 x 4000 pixels to 4x4: scaling first would give 4 x 16000; the centre band of 1x1
        // (column round((4000 - 1) / 2) = 2000, ties to even) holds value 2000 % 251 = 243.
        let strip = image::GrayImage::from_fn(4000, 1, |x, _| image::Luma([(x % 251) as u8]));
        let out = fit(&DynamicImage::ImageLuma8(strip), [4, 4], Resize::Crop).into_luma8();
        assert_eq!(out.dimensions(), (4, 4));
        assert!(out.pixels().all(|p| p.0[0] == 243), "{:?}", out.as_raw());
        // No pixels at all (the fuzzers' idx data with 0 rows): a blank 4x4, no division by 0.
        let empty = fit(&DynamicImage::ImageLuma8(image::GrayImage::new(5, 0)), [4, 4], Resize::Crop);
        assert_eq!(empty.into_luma8().dimensions(), (4, 4));
    }
}
