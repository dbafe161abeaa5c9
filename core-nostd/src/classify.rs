//! From class scores to an answer: the index of the largest score, and softmax probabilities.

use crate::{Error, check_len};

/// Index of the largest score; the first one wins a tie, and NaN never wins.
pub fn argmax<T: PartialOrd + Copy>(scores: &[T]) -> Result<usize, Error> {
    let mut best: Option<(usize, T)> = None;
    for (index, &score) in scores.iter().enumerate() {
        let better = match best {
            // A NaN is not comparable, even with itself.
            None => score.partial_cmp(&score).is_some(),
            Some((_, current)) => score > current,
        };
        if better {
            best = Some((index, score));
        }
    }
    best.map(|(index, _)| index).ok_or(Error::Length {
        what: "scores",
        expected: 1,
        found: scores.len(),
    })
}

/// Softmax of `scores` into `probabilities` (same length), computed stably by subtracting
/// the largest score first.
pub fn softmax(scores: &[f32], probabilities: &mut [f32]) -> Result<(), Error> {
    check_len("probabilities", probabilities.len(), Some(scores.len()))?;
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0f32;
    for (p, &s) in probabilities.iter_mut().zip(scores) {
        *p = libm::expf(s - max);
        total += *p;
    }
    if total > 0.0 {
        probabilities.iter_mut().for_each(|p| *p /= total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_largest() {
        assert_eq!(argmax(&[1i8, 7, 7, -3]), Ok(1));
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.25]), Ok(1));
        assert!(argmax::<i32>(&[]).is_err());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let mut p = [0.0f32; 3];
        softmax(&[1.0, 2.0, 9.0], &mut p).unwrap();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > 0.99 && p[0] < p[1]);
        // Large scores do not overflow.
        softmax(&[1000.0, 1000.0, f32::MIN], &mut p).unwrap();
        assert_eq!(p, [0.5, 0.5, 0.0]);
        softmax(&[0.0, 0.0, 0.0], &mut p).unwrap();
        assert!(p.iter().all(|&v| (v - 1.0 / 3.0).abs() < 1e-6));
        assert!(softmax(&[0.0; 2], &mut p).is_err());
    }
}
