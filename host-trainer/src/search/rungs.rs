//! The rungs of a search: how many settings train at each step and on what budget.
//!
//! Random search is one rung: every setting on the whole budget. Successive halving follows
//! scikit-learn's `HalvingRandomSearchCV` with `factor=3`: all settings start on a small
//! budget, the best third go on with three times the budget, and so on, for as many rungs as
//! it takes to get down to about one setting (`1 + floor(log3(settings))`), or as many as fit
//! between the smallest budget and the largest (`1 + floor(log3(max / smallest))`),
//! whichever is fewer. The first budget is chosen so that the last rung gets the largest
//! budget (scikit-learn's `min_resources="exhaust"`), which makes the last rung's scores
//! those a random search would measure.

use serde::Serialize;

use super::Strategy;

/// How much more budget each rung gets, and how many fewer settings.
pub const FACTOR: usize = 3;

/// One step of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rung {
    /// Settings trained in this rung.
    pub candidates: usize,
    /// Training images, or epochs, each fold training gets.
    pub budget: usize,
}

/// The rungs for `settings` settings with budgets up to `max_budget`, none below
/// `smallest_budget` unless the largest is smaller still.
pub fn plan(
    strategy: Strategy,
    settings: usize,
    max_budget: usize,
    smallest_budget: usize,
) -> Vec<Rung> {
    let count = match strategy {
        Strategy::Random => 1,
        Strategy::Halving => {
            rungs_to_one_setting(settings).min(rungs_that_fit(max_budget, smallest_budget))
        }
    };
    let mut candidates = settings;
    (0..count)
        .map(|rung| {
            let steps_to_last = (count - 1 - rung) as u32;
            let planned = Rung {
                candidates,
                budget: max_budget / FACTOR.pow(steps_to_last),
            };
            candidates = candidates.div_ceil(FACTOR);
            planned
        })
        .collect()
}

/// `1 + floor(log3(settings))`.
fn rungs_to_one_setting(settings: usize) -> usize {
    let mut rungs = 1;
    let mut reach = FACTOR;
    while reach <= settings {
        rungs += 1;
        match reach.checked_mul(FACTOR) {
            Some(next) => reach = next,
            None => break,
        }
    }
    rungs
}

/// `1 + floor(log3(max / smallest))`, at least 1.
fn rungs_that_fit(max_budget: usize, smallest_budget: usize) -> usize {
    let mut rungs = 1;
    let mut budget = smallest_budget.max(1).saturating_mul(FACTOR);
    while budget <= max_budget {
        rungs += 1;
        match budget.checked_mul(FACTOR) {
            Some(next) => budget = next,
            None => break,
        }
    }
    rungs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rungs(settings: usize, max: usize, smallest: usize) -> Vec<(usize, usize)> {
        plan(Strategy::Halving, settings, max, smallest)
            .iter()
            .map(|r| (r.candidates, r.budget))
            .collect()
    }

    #[test]
    fn random_search_is_one_rung_on_the_whole_budget() {
        let plan = plan(Strategy::Random, 10, 6667, 60);
        assert_eq!(
            plan,
            [Rung {
                candidates: 10,
                budget: 6667
            }]
        );
    }

    #[test]
    fn halving_thirds_the_settings_and_triples_the_budget() {
        // The comparison: 10 settings, 3 folds of a 10,000-image subset.
        assert_eq!(rungs(10, 6666, 60), [(10, 740), (4, 2222), (2, 6666)]);
        assert_eq!(rungs(27, 900, 10), [(27, 33), (9, 100), (3, 300), (1, 900)]);
        assert_eq!(rungs(3, 500, 40), [(3, 166), (1, 500)]);
        assert_eq!(
            rungs(2, 500, 40),
            [(2, 500)],
            "fewer than 3 settings: one rung"
        );
    }

    #[test]
    fn halving_stops_where_the_budget_runs_out() {
        // 1 to 20 epochs leave room for 1, 3 and 9 epochs, then the whole 20.
        assert_eq!(rungs(100, 20, 1), [(100, 2), (34, 6), (12, 20)]);
        assert_eq!(rungs(100, 1, 1), [(100, 1)]);
        assert_eq!(
            rungs(5, 10, 50),
            [(5, 10)],
            "a smallest budget above the largest"
        );
        for (settings, max, smallest) in [(10, 6666, 60), (81, 2000, 5), (7, 3, 1)] {
            let plan = plan(Strategy::Halving, settings, max, smallest);
            assert_eq!(plan.last().unwrap().budget, max);
            assert!(plan[0].budget >= smallest.min(max));
            for pair in plan.windows(2) {
                assert_eq!(pair[1].candidates, pair[0].candidates.div_ceil(FACTOR));
                assert!(pair[1].budget >= pair[0].budget * FACTOR);
            }
        }
    }
}
