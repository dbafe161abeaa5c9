//! Stratified sampling: subsets and validation splits in which every class keeps its share
//! of the whole, to within one image.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Splits `total` images among classes in proportion to `counts`, by largest remainder, so
/// the shares add up to `total` exactly and each is within one image of its exact value.
pub fn allocate(counts: &[usize], total: usize) -> Vec<usize> {
    let all: usize = counts.iter().sum();
    if all == 0 {
        return vec![0; counts.len()];
    }
    let total = total.min(all);
    let mut shares: Vec<usize> = counts.iter().map(|&c| c * total / all).collect();
    let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
    // Ties go to the lower label, so the result does not depend on sort stability.
    by_remainder.sort_by_key(|&c| (std::cmp::Reverse(counts[c] * total % all), c));
    let mut missing = total - shares.iter().sum::<usize>();
    for class in by_remainder {
        if missing == 0 {
            break;
        }
        if shares[class] < counts[class] {
            shares[class] += 1;
            missing -= 1;
        }
    }
    shares
}

/// Indices of each class, each list shuffled with the seeded generator.
fn shuffled_by_class(labels: &[u8], rng: &mut StdRng) -> Vec<Vec<usize>> {
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class = vec![Vec::new(); classes];
    for (index, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(index);
    }
    for indices in &mut by_class {
        indices.shuffle(rng);
    }
    by_class
}

/// `size` indices drawn at random, every class in proportion to its count.
/// The result is sorted, so a subset keeps the original order.
pub fn stratified_sample(labels: &[u8], size: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let by_class = shuffled_by_class(labels, &mut rng);
    let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let shares = allocate(&counts, size);
    let mut picked: Vec<usize> = by_class
        .iter()
        .zip(&shares)
        .flat_map(|(indices, &share)| indices[..share].iter().copied())
        .collect();
    picked.sort_unstable();
    picked
}

/// Splits indices into (training, validation), `validation_fraction` of each class going to
/// validation. Both lists are sorted.
pub fn stratified_split(
    labels: &[u8],
    validation_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let validation_size = (labels.len() as f64 * validation_fraction).round() as usize;
    let validation = stratified_sample(labels, validation_size, seed);
    let mut is_validation = vec![false; labels.len()];
    for &index in &validation {
        is_validation[index] = true;
    }
    let training = (0..labels.len()).filter(|&i| !is_validation[i]).collect();
    (training, validation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_adds_up_and_stays_within_one_image() {
        let counts = [5000, 3, 17, 0, 998];
        for total in [0, 1, 7, 100, 1234, 6018] {
            let shares = allocate(&counts, total);
            assert_eq!(shares.iter().sum::<usize>(), total);
            let all: usize = counts.iter().sum();
            for (share, count) in shares.iter().zip(counts) {
                let exact = count as f64 * total as f64 / all as f64;
                assert!(
                    (*share as f64 - exact).abs() < 1.0,
                    "{shares:?} for {total}"
                );
            }
        }
    }

    #[test]
    fn split_is_disjoint_covering_and_balanced() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
        let (train, validation) = stratified_split(&labels, 0.2, 7);
        assert_eq!(validation.len(), 200);
        let mut all: Vec<usize> = train.iter().chain(&validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        for class in 0..10u8 {
            let n = validation.iter().filter(|&&i| labels[i] == class).count();
            assert_eq!(n, 20);
        }
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let labels: Vec<u8> = (0..500).map(|i| (i % 10) as u8).collect();
        assert_eq!(
            stratified_split(&labels, 0.2, 1),
            stratified_split(&labels, 0.2, 1)
        );
        assert_ne!(
            stratified_split(&labels, 0.2, 1),
            stratified_split(&labels, 0.2, 2)
        );
    }
}
