//! Training-time augmentation of NCHW batches with a seeded generator: `crop` (pad by 4 with
//! zeros, then take a random window of the original size: the CIFAR recipe) and `flip`
//! (horizontal, with probability 1/2). The generator is seeded per step, so a resumed run
//! augments exactly as an uninterrupted one.

use std::str::FromStr;

use super::dataset::Rng;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aug {
    Crop,
    Flip,
}

/// `crop,flip` and the like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Augment(pub Vec<Aug>);

impl FromStr for Augment {
    type Err = String;
    fn from_str(s: &str) -> Result<Augment, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.trim() {
                "crop" => Ok(Aug::Crop),
                "flip" => Ok(Aug::Flip),
                other => Err(format!("unknown augmentation '{other}' (crop, flip)")),
            })
            .collect::<Result<_, _>>()
            .map(Augment)
    }
}

/// The form `--augment` takes: `crop,flip`.
impl std::fmt::Display for Augment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|a| if *a == Aug::Crop { "crop" } else { "flip" }).collect();
        write!(f, "{}", names.join(","))
    }
}

const PAD: usize = 4;

impl Augment {
    /// Augments every image of an NCHW batch in place.
    pub fn apply(&self, x: &mut Tensor, rng: &mut Rng) {
        if self.0.is_empty() || x.rank() != 4 {
            return;
        }
        let [_, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        for img in x.data_mut().chunks_mut(c * h * w) {
            for aug in &self.0 {
                match aug {
                    Aug::Flip if rng.next_u64() & 1 == 1 => img.chunks_mut(w).for_each(<[f32]>::reverse),
                    Aug::Crop => {
                        let dy = (rng.next_u64() % (2 * PAD as u64 + 1)) as isize - PAD as isize;
                        let dx = (rng.next_u64() % (2 * PAD as u64 + 1)) as isize - PAD as isize;
                        shift_planes(img, h, w, dy, dx);
                    }
                    Aug::Flip => {}
                }
            }
        }
    }
}

/// Each h×w plane shifted by (dy, dx), zeros shifted in: a crop of the zero-padded plane.
fn shift_planes(img: &mut [f32], h: usize, w: usize, dy: isize, dx: isize) {
    for plane in img.chunks_mut(h * w) {
        let src = plane.to_vec();
        for y in 0..h as isize {
            for x in 0..w as isize {
                let (sy, sx) = (y + dy, x + dx);
                let inside = sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize;
                plane[(y * w as isize + x) as usize] = if inside { src[(sy * w as isize + sx) as usize] } else { 0.0 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_reverses_rows_and_crop_shifts_in_zeros() {
        let mut p = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        shift_planes(&mut p, 2, 3, 0, 1);
        assert_eq!(p, vec![2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
        assert_eq!("crop, flip".parse::<Augment>(), Ok(Augment(vec![Aug::Crop, Aug::Flip])));
        assert!("rotate".parse::<Augment>().is_err());
        // The same seed gives the same augmentation.
        let x = Tensor::from_vec([2, 1, 4, 4], (0..32).map(|v| v as f32).collect());
        let aug: Augment = "crop,flip".parse().unwrap();
        let (mut a, mut b) = (x.clone(), x.clone());
        aug.apply(&mut a, &mut Rng(3));
        aug.apply(&mut b, &mut Rng(3));
        assert_eq!(a.data(), b.data());
    }
}
