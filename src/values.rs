//! Parsers for option values, so that a bad value is refused before any work, in one line
//! (`--lr nan` or `--lr -1` never start training): learning rates and other rates must be finite
//! numbers in their range. The command line parses its flags with them; the C API and the Python
//! bindings pass their numbers through them as text, so that every front end has the same ranges
//! and the same messages.

/// A whole number >= 1 (a batch size, a step count).
pub fn count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a whole number >= 1")),
    }
}

/// A finite number > 0.
pub fn positive(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v <= 0.0 {
        return Err(format!("{s} must be greater than 0"));
    }
    Ok(v)
}

/// A finite number >= 0.
pub fn non_negative(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v < 0.0 {
        return Err(format!("{s} must not be negative"));
    }
    Ok(v)
}

/// A finite number in [0, 1) (momentum, decay factors).
pub fn fraction(s: &str) -> Result<f32, String> {
    let v = non_negative(s)?;
    if v >= 1.0 {
        return Err(format!("{s} must be below 1"));
    }
    Ok(v)
}

fn finite(s: &str) -> Result<f32, String> {
    let v: f32 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{s} is not a finite number"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_finite_and_in_range() {
        assert_eq!(positive("1e-3"), Ok(1e-3));
        for bad in ["nan", "inf", "-1", "0", "x", ""] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(non_negative("-0.1").is_err());
        assert_eq!(fraction("0.9"), Ok(0.9));
        assert_eq!(count("8"), Ok(8));
        assert!(count("0").is_err() && count("-1").is_err() && count("1.5").is_err());
        assert!(fraction("1").is_err() && fraction("-0.5").is_err() && fraction("NaN").is_err());
    }
}
