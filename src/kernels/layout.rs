//! Data movement, generic over the element type so that runtime ops (f32) and load-time folding
//! of shape sub-graphs (i64) share one implementation. Shapes are already checked by the ops.

use crate::tensor::{numel, strides};

/// Visits every multi-index of `shape` in row-major order with the matching offset of a source
/// laid out with `src_strides` (any strides, including 0 for broadcast and negative via `base`).
fn for_each_offset(shape: &[usize], src_strides: &[isize], base: isize, mut f: impl FnMut(usize)) {
    let n = numel(shape);
    if n == 0 {
        return;
    }
    let rank = shape.len();
    let mut idx = vec![0usize; rank];
    let mut off = base;
    for _ in 0..n {
        f(off as usize);
        for d in (0..rank).rev() {
            idx[d] += 1;
            off += src_strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= src_strides[d] * shape[d] as isize;
            idx[d] = 0;
        }
    }
}

/// Output of `perm` applied to the axes of `data` (`out.shape[i] = shape[perm[i]]`).
pub fn transpose<T: Copy>(data: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let st = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    let mut out = Vec::with_capacity(data.len());
    for_each_offset(&out_shape, &src, 0, |o| out.push(data[o]));
    out
}

/// Strided sub-array: along axis d, `out_shape[d]` elements from `starts[d]` every `steps[d]`.
pub fn slice<T: Copy>(data: &[T], shape: &[usize], starts: &[usize], steps: &[isize], out_shape: &[usize]) -> Vec<T> {
    let st = strides(shape);
    let base: isize = starts.iter().zip(&st).map(|(&s, &t)| (s * t) as isize).sum();
    let src: Vec<isize> = steps.iter().zip(&st).map(|(&s, &t)| s * t as isize).collect();
    let mut out = Vec::with_capacity(numel(out_shape));
    for_each_offset(out_shape, &src, base, |o| out.push(data[o]));
    out
}

/// `data` broadcast to `out_shape` (numpy rules; shapes checked by the caller).
pub fn broadcast<T: Copy>(data: &[T], shape: &[usize], out_shape: &[usize]) -> Vec<T> {
    let st = broadcast_strides(shape, out_shape);
    let mut out = Vec::with_capacity(numel(out_shape));
    for_each_offset(out_shape, &st, 0, |o| out.push(data[o]));
    out
}

/// Strides that read `shape` as if broadcast to `out_shape` (0 on broadcast axes).
pub fn broadcast_strides(shape: &[usize], out_shape: &[usize]) -> Vec<isize> {
    let st = strides(shape);
    let lead = out_shape.len() - shape.len();
    (0..out_shape.len()).map(|d| if d < lead || shape[d - lead] == 1 { 0 } else { st[d - lead] as isize }).collect()
}

/// `f(a, b)` element by element over the broadcast of both shapes.
pub fn zip_broadcast<T: Copy>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    let (sa, sb) = (broadcast_strides(a_shape, out_shape), broadcast_strides(b_shape, out_shape));
    let mut ia = Vec::with_capacity(numel(out_shape));
    for_each_offset(out_shape, &sa, 0, |o| ia.push(o));
    let mut out = Vec::with_capacity(ia.len());
    let mut k = 0;
    for_each_offset(out_shape, &sb, 0, |o| {
        out.push(f(a[ia[k]], b[o]));
        k += 1;
    });
    out
}

/// Concatenation along `axis` of arrays that agree on every other axis.
pub fn concat<T: Copy>(parts: &[(&[T], &[usize])], axis: usize) -> Vec<T> {
    let outer: usize = parts[0].1[..axis].iter().product();
    let total: usize = parts.iter().map(|(d, _)| d.len()).sum();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (data, shape) in parts {
            let inner: usize = shape[axis..].iter().product();
            out.extend_from_slice(&data[o * inner..(o + 1) * inner]);
        }
    }
    out
}

/// Calls `row(base, last)` once per row of an output whose axis d has `maps[d].len()` positions,
/// in row-major order (a row: every position of the last axis). Output position o_d reads source
/// position `maps[d][o_d]` of axis d (a negative entry: no source). `base` is the source offset of
/// the row's first `rank − 1` coordinates (`None` when one of them has no source); the row's
/// element j reads `base + last[j]`. Offsets add up per axis: no division in the loops.
fn for_each_mapped_row(shape: &[usize], maps: &[Vec<isize>], mut row: impl FnMut(Option<usize>, &[isize])) {
    let rank = shape.len();
    if rank == 0 {
        return row(Some(0), &[0]);
    }
    if maps.iter().any(Vec::is_empty) {
        return;
    }
    let st = strides(shape);
    let outer = &maps[..rank - 1];
    let mut idx = vec![0usize; rank - 1];
    loop {
        let mut base = Some(0usize);
        for (d, &i) in idx.iter().enumerate() {
            let src = outer[d][i];
            base = base.filter(|_| src >= 0).map(|b| b + src as usize * st[d]);
        }
        row(base, &maps[rank - 1]);
        // Next row: the odometer over the outer axes.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < outer[d].len() {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// out[o] = data[Σ_d maps[d][o_d]·stride_d] for `data` of `shape`, or `fill` where some
/// `maps[d][o_d]` is negative: Pad in every mode, with crops (the ops build the maps).
pub fn gather_axes<T: Copy>(data: &[T], shape: &[usize], maps: &[Vec<isize>], fill: T) -> Vec<T> {
    let mut out = Vec::with_capacity(maps.iter().map(Vec::len).product());
    // The part of each row that reads consecutive elements (a pad's interior) is one slice copy.
    let (lo, hi) = maps.last().map_or((0, 0), |m| longest_consecutive_run(m));
    for_each_mapped_row(shape, maps, |base, last| match base {
        Some(b) => {
            let read = |&m: &isize| if m >= 0 { data[b + m as usize] } else { fill };
            out.extend(last[..lo].iter().map(read));
            if hi > lo {
                let start = b + last[lo] as usize;
                out.extend_from_slice(&data[start..start + (hi - lo)]);
            }
            out.extend(last[hi..].iter().map(read));
        }
        None => out.resize(out.len() + last.len(), fill),
    });
    out
}

/// The longest range lo..hi of `map` whose entries are non-negative and count up by one.
fn longest_consecutive_run(map: &[isize]) -> (usize, usize) {
    let (mut best, mut start) = ((0, 0), 0);
    for j in 0..map.len() {
        if map[j] < 0 || (j > start && map[j] != map[j - 1] + 1) {
            start = j + usize::from(map[j] < 0);
        }
        if j + 1 > start && j + 1 - start > best.1 - best.0 {
            best = (start, j + 1);
        }
    }
    best
}

/// Adjoint of `gather_axes`: each entry of `g` (laid out as its output) added into the source
/// element it was read from, in zeros of `shape`; entries read from no source are dropped.
pub fn scatter_add_axes(g: &[f32], shape: &[usize], maps: &[Vec<isize>]) -> Vec<f32> {
    let mut out = vec![0.0f32; numel(shape)];
    let (lo, hi) = maps.last().map_or((0, 0), |m| longest_consecutive_run(m));
    let mut k = 0;
    for_each_mapped_row(shape, maps, |base, last| {
        if let Some(b) = base {
            let row = &g[k..k + last.len()];
            let mut add = |range: std::ops::Range<usize>| {
                for (&m, &v) in last[range.clone()].iter().zip(&row[range]) {
                    if m >= 0 {
                        out[b + m as usize] += v;
                    }
                }
            };
            add(0..lo);
            add(hi..last.len());
            if hi > lo {
                let start = b + last[lo] as usize;
                out[start..start + (hi - lo)].iter_mut().zip(&row[lo..hi]).for_each(|(o, &v)| *o += v);
            }
        }
        k += last.len();
    });
    out
}

/// Elements of `data` picked along `axis` by `indices` (already made non-negative).
pub fn gather<T: Copy>(data: &[T], shape: &[usize], axis: usize, indices: &[usize]) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let start = (o * shape[axis] + i) * inner;
            out.extend_from_slice(&data[start..start + inner]);
        }
    }
    out
}

/// Adjoint of `broadcast`: sums `g` (of `out_shape`) over the axes that `shape` broadcasts.
pub fn reduce_to_shape(g: &[f32], out_shape: &[usize], shape: &[usize]) -> Vec<f32> {
    if out_shape == shape {
        return g.to_vec();
    }
    let st = broadcast_strides(shape, out_shape);
    let mut out = vec![0.0f32; numel(shape)];
    let mut k = 0;
    for_each_offset(out_shape, &st, 0, |o| {
        out[o] += g[k];
        k += 1;
    });
    out
}

/// Adjoint of `slice`: `g` (of `out_shape`) scattered into zeros of `shape`.
pub fn unslice(g: &[f32], shape: &[usize], starts: &[usize], steps: &[isize], out_shape: &[usize]) -> Vec<f32> {
    let st = strides(shape);
    let base: isize = starts.iter().zip(&st).map(|(&s, &t)| (s * t) as isize).sum();
    let dst: Vec<isize> = steps.iter().zip(&st).map(|(&s, &t)| s * t as isize).collect();
    let mut out = vec![0.0f32; numel(shape)];
    let mut k = 0;
    for_each_offset(out_shape, &dst, base, |o| {
        out[o] += g[k];
        k += 1;
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movement_matches_hand_worked_examples() {
        // [[0,1,2],[3,4,5]] transposed.
        assert_eq!(transpose(&[0, 1, 2, 3, 4, 5], &[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
        // Row 1, every second column from the end: [5, 3].
        assert_eq!(slice(&[0, 1, 2, 3, 4, 5], &[2, 3], &[1, 2], &[1, -2], &[1, 2]), vec![5, 3]);
        assert_eq!(broadcast(&[1, 2], &[2, 1], &[2, 3]), vec![1, 1, 1, 2, 2, 2]);
        assert_eq!(
            zip_broadcast(&[1, 2, 3], &[3], &[10, 20], &[2, 1], &[2, 3], |a, b| a + b),
            vec![11, 12, 13, 21, 22, 23]
        );
        assert_eq!(concat(&[(&[1, 2][..], &[1, 2][..]), (&[3][..], &[1, 1][..])], 1), vec![1, 2, 3]);
        assert_eq!(gather(&[0, 1, 2, 3, 4, 5], &[2, 3], 1, &[2, 0]), vec![2, 0, 5, 3]);
        // [[0,1,2],[3,4,5]]: rows (none, 1, 0), columns (2, 2, none, 0).
        let maps = [vec![-1, 1, 0], vec![2, 2, -1, 0]];
        assert_eq!(gather_axes(&[0, 1, 2, 3, 4, 5], &[2, 3], &maps, 9), vec![9, 9, 9, 9, 5, 5, 9, 3, 2, 2, 9, 0]);
        // Its adjoint on ones: element 2 and 5 are read twice, 0 and 3 once, 1 and 4 never.
        assert_eq!(scatter_add_axes(&[1.0; 12], &[2, 3], &maps), vec![1.0, 0.0, 2.0, 1.0, 0.0, 2.0]);
        assert_eq!(gather_axes(&[7], &[], &[], 0), vec![7]);
        assert_eq!(longest_consecutive_run(&[-1, 3, 0, 1, 2, 3, 3, -1]), (2, 6));
        assert_eq!(longest_consecutive_run(&[-1, -1]), (0, 0));
        assert_eq!(gather_axes(&[1, 2], &[1, 2], &[vec![0], vec![]], 0), Vec::<i32>::new());
    }
}
