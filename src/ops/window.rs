//! Sliding-window geometry shared by Conv, MaxPool and AveragePool: kernel, strides, dilations,
//! explicit pads or `auto_pad`, `ceil_mode`. Only 2-D windows over NCHW tensors.

use crate::attrs::Attrs;

#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Begin pads (top, left); end pads are derived per input size for auto_pad.
    pub pads: [usize; 4],
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AutoPad {
    NotSet,
    Valid,
    SameUpper,
    SameLower,
}

/// The window's placement over one concrete input size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    pub in_hw: [usize; 2],
    pub out_hw: [usize; 2],
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
}

impl Geometry {
    /// A 1×1 window with stride 1 and no padding: each output is its input position, so a
    /// convolution multiplies the input planes directly (no im2col).
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.strides == [1, 1] && self.pads == [0; 4]
    }
}

fn pair(attrs: &Attrs, name: &str, default: usize) -> Result<[usize; 2], String> {
    match attrs.ints(name)? {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!("'{name}' must be two positive values (2-D window), got {v:?}")),
    }
}

impl Window {
    /// Reads the window attributes; `kernel` is given when it comes from a weight's shape.
    pub fn from_attrs(attrs: &Attrs, kernel: Option<[usize; 2]>) -> Result<Window, String> {
        let kernel = match (attrs.ints("kernel_shape")?, kernel) {
            (Some(k), _) if k.len() == 2 && k.iter().all(|&x| x >= 1) => [k[0] as usize, k[1] as usize],
            (Some(k), _) => {
                return Err(format!("'kernel_shape' must be two positive values (2-D windows only), got {k:?}"))
            }
            (None, Some(k)) => k,
            (None, None) => return Err("missing 'kernel_shape'".into()),
        };
        let pads = match attrs.ints("pads")? {
            None => [0; 4],
            Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                // ONNX order: [top, left, bottom, right]
                [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
            }
            Some(p) => return Err(format!("'pads' must be four non-negative values, got {p:?}")),
        };
        let auto_pad = match attrs.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "VALID" => AutoPad::Valid,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            other => return Err(format!("unknown auto_pad '{other}'")),
        };
        Ok(Window {
            kernel,
            strides: pair(attrs, "strides", 1)?,
            dilations: pair(attrs, "dilations", 1)?,
            pads,
            auto_pad,
            ceil_mode: attrs.int("ceil_mode", 0)? != 0,
        })
    }

    pub fn geometry(&self, in_hw: [usize; 2]) -> Result<Geometry, String> {
        let mut pads = self.pads;
        let mut out_hw = [0; 2];
        for d in 0..2 {
            let (k, s, dil, n) = (self.kernel[d], self.strides[d], self.dilations[d], in_hw[d]);
            let span = dil * (k - 1) + 1;
            match self.auto_pad {
                AutoPad::NotSet | AutoPad::Valid => {
                    if self.auto_pad == AutoPad::Valid {
                        pads[d] = 0;
                        pads[d + 2] = 0;
                    }
                    let padded = n + pads[d] + pads[d + 2];
                    if padded < span {
                        return Err(format!("window {span} is larger than the padded input {padded}"));
                    }
                    out_hw[d] = if self.ceil_mode {
                        let o = (padded - span).div_ceil(s) + 1;
                        // The last window must start inside the input or left padding (ONNX/PyTorch rule).
                        if (o - 1) * s >= n + pads[d] {
                            o - 1
                        } else {
                            o
                        }
                    } else {
                        (padded - span) / s + 1
                    };
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = n.div_ceil(s);
                    let total = ((o - 1) * s + span).saturating_sub(n);
                    let (small, big) = (total / 2, total - total / 2);
                    let (begin, end) = if self.auto_pad == AutoPad::SameUpper { (small, big) } else { (big, small) };
                    pads[d] = begin;
                    pads[d + 2] = end;
                    out_hw[d] = o;
                }
            }
            if out_hw[d] == 0 {
                return Err(format!("output size is zero for input size {n}"));
            }
        }
        Ok(Geometry { in_hw, out_hw, kernel: self.kernel, strides: self.strides, dilations: self.dilations, pads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::Attr;

    fn attrs(list: &[(&str, Attr)]) -> Attrs {
        Attrs(list.iter().map(|(n, a)| (n.to_string(), a.clone())).collect())
    }

    #[test]
    fn resnet_stem_geometry() {
        // 7x7 stride 2 pad 3 on 224: (224 + 6 - 7) / 2 + 1 = 112.
        let w = Window::from_attrs(
            &attrs(&[("strides", Attr::Ints(vec![2, 2])), ("pads", Attr::Ints(vec![3, 3, 3, 3]))]),
            Some([7, 7]),
        )
        .unwrap();
        assert_eq!(w.geometry([224, 224]).unwrap().out_hw, [112, 112]);
    }

    #[test]
    fn same_upper_puts_extra_pad_at_the_end() {
        // TF 'same' 3x3 stride 2 on 56: out 28, total pad (27*2 + 3) - 56 = 1 -> (0, 1).
        let w = Window::from_attrs(
            &attrs(&[("strides", Attr::Ints(vec![2, 2])), ("auto_pad", Attr::Str("SAME_UPPER".into()))]),
            Some([3, 3]),
        )
        .unwrap();
        let g = w.geometry([56, 56]).unwrap();
        assert_eq!(g.out_hw, [28, 28]);
        assert_eq!(g.pads, [0, 0, 1, 1]);
    }

    #[test]
    fn ceil_mode_drops_a_window_starting_in_the_end_padding() {
        // PyTorch MaxPool2d(3, 2, padding=1, ceil_mode=True) on 6 gives 4 (not 5): floor((6+2-3)/2)+1 = 3,
        // ceil gives 4, and window 4 starts at 6 < 6 + 1, so it stays.
        let w = Window::from_attrs(
            &attrs(&[
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("strides", Attr::Ints(vec![2, 2])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ("ceil_mode", Attr::Int(1)),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(w.geometry([6, 6]).unwrap().out_hw, [4, 4]);
        assert_eq!(w.geometry([5, 5]).unwrap().out_hw, [3, 3]);
    }
}
