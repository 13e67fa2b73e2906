//! Mean softmax cross-entropy over the batch (design.md, "Numerics"), fused with log-softmax:
//! `loss = mean_i (logsumexp(z_i) − z_i[y_i])`, `∂loss/∂z_i = (softmax(z_i) − onehot(y_i)) / N`.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Checks labels against the logits' batch and class counts.
pub fn check_labels(labels: &[i64], batch: usize, classes: usize) -> Result<()> {
    if labels.len() != batch {
        return Err(Error::data("labels", format!("{} labels for a batch of {batch}", labels.len())));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l < 0 || l as usize >= classes) {
        return Err(Error::data(
            "labels",
            format!("label {l} at index {i} is outside the model's {classes} classes (0..{})", classes - 1),
        ));
    }
    Ok(())
}

/// Checks logits of `shape` (`[N, K]`) and their labels; returns (N, K).
pub fn check_logits(shape: &[usize], labels: &[i64]) -> Result<(usize, usize)> {
    let &[n, k] = shape else {
        return Err(Error::data(
            "logits",
            format!("the first output has shape {shape:?}; the loss needs [batch, classes]"),
        ));
    };
    check_labels(labels, n, k)?;
    Ok((n, k))
}

/// The mean loss from the sum of the per-row terms, or why it is not finite.
pub fn mean_loss(total: f64, rows: usize) -> Result<f32> {
    let loss = (total / rows as f64) as f32;
    if !loss.is_finite() {
        return Err(Error::NonFinite(format!("the loss is {loss} (logits contain NaN or infinity)")));
    }
    Ok(loss)
}

/// Loss and its gradient with respect to `logits` (`[N, K]`).
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[i64]) -> Result<(f32, Tensor)> {
    let (n, k) = check_logits(logits.shape(), labels)?;
    let mut grad = vec![0.0f32; n * k];
    let mut total = 0.0f64;
    for (i, (row, g)) in logits.data().chunks(k).zip(grad.chunks_mut(k)).enumerate() {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        let lse = max + sum.ln();
        let y = labels[i] as usize;
        total += lse - row[y] as f64;
        for (j, (gv, &z)) in g.iter_mut().zip(row).enumerate() {
            let p = (z as f64 - lse).exp();
            *gv = ((p - if j == y { 1.0 } else { 0.0 }) / n as f64) as f32;
        }
    }
    Ok((mean_loss(total, n)?, Tensor::from_vec([n, k], grad)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_log_k() {
        // Equal logits: softmax is 1/K, so the loss is ln K and the gradient (1/K − onehot)/N.
        let z = Tensor::from_vec([2, 4], vec![0.5; 8]);
        let (loss, g) = softmax_cross_entropy(&z, &[1, 3]).unwrap();
        assert!((loss - 4f32.ln()).abs() < 1e-6);
        assert!((g.data()[1] - (0.25 - 1.0) / 2.0).abs() < 1e-7);
        assert!((g.data()[0] - 0.25 / 2.0).abs() < 1e-7);
    }

    #[test]
    fn bad_labels_and_non_finite_logits_are_errors() {
        let z = Tensor::from_vec([2, 3], vec![0.0; 6]);
        assert!(matches!(softmax_cross_entropy(&z, &[0]), Err(Error::Data { .. })));
        assert!(matches!(softmax_cross_entropy(&z, &[0, 3]), Err(Error::Data { .. })));
        let nan = Tensor::from_vec([1, 2], vec![f32::NAN, 0.0]);
        assert!(matches!(softmax_cross_entropy(&nan, &[0]), Err(Error::NonFinite(_))));
    }
}
