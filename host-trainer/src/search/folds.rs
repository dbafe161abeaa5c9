//! Stratified K-fold cross-validation: the folds are disjoint, cover the set, and give every
//! class the same share, to within one image, as scikit-learn's `StratifiedKFold(shuffle=True)`
//! does.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Splits the indices of `labels` into `k` folds. Each class's images are shuffled with the
/// seeded generator and dealt out in turn, class after class, so that every fold holds
/// `count / k` images of a class rounded up or down, and the folds' sizes differ by at most
/// one. Each fold is sorted.
pub fn stratified_folds(labels: &[u8], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class = vec![Vec::new(); classes];
    for (index, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(index);
    }

    let mut folds = vec![Vec::with_capacity(labels.len() / k + 1); k];
    // Dealing continues across classes: a class that ends on fold 2 hands fold 3 the next
    // class's first image, which keeps the fold sizes within one of each other.
    let mut position = 0;
    for indices in &mut by_class {
        indices.shuffle(&mut rng);
        for &index in indices.iter() {
            folds[position % k].push(index);
            position += 1;
        }
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    folds
}

/// The indices of every fold but `held_out`, sorted.
pub fn training_indices(folds: &[Vec<usize>], held_out: usize) -> Vec<usize> {
    let mut indices: Vec<usize> = folds
        .iter()
        .enumerate()
        .filter(|&(fold, _)| fold != held_out)
        .flat_map(|(_, indices)| indices.iter().copied())
        .collect();
    indices.sort_unstable();
    indices
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn folds_are_disjoint_covering_and_balanced(
            labels in proptest::collection::vec(0u8..10, 0..600),
            k in 2usize..8,
            seed in any::<u64>(),
        ) {
            let folds = stratified_folds(&labels, k, seed);
            prop_assert_eq!(folds.len(), k);

            let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());

            for class in 0..10u8 {
                let total = labels.iter().filter(|&&l| l == class).count();
                let exact = total as f64 / k as f64;
                for fold in &folds {
                    let count = fold.iter().filter(|&&i| labels[i] == class).count();
                    prop_assert!((count as f64 - exact).abs() < 1.0, "class {} fold {:?}", class, fold);
                }
            }
            let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
            let (low, high) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(high - low <= 1, "{:?}", sizes);

            for held_out in 0..k {
                let training = training_indices(&folds, held_out);
                prop_assert_eq!(training.len() + folds[held_out].len(), labels.len());
                prop_assert!(training.iter().all(|i| folds[held_out].binary_search(i).is_err()));
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_folds() {
        let labels: Vec<u8> = (0..300).map(|i| (i % 10) as u8).collect();
        assert_eq!(
            stratified_folds(&labels, 3, 4),
            stratified_folds(&labels, 3, 4)
        );
        assert_ne!(
            stratified_folds(&labels, 3, 4),
            stratified_folds(&labels, 3, 5)
        );
    }
}
