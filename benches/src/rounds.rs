//! Several rounds of the same variants, summarised: this guest's figures drift by tens of percent
//! between runs minutes apart (direct throughput, tail latency), so one run can pass or miss a
//! target by luck. Each round runs every variant once, in order, so each round's ratios still
//! compare numbers measured minutes apart; the summary is the median value and the median of the
//! per-round ratios, and failure counts are added up (one failure in any round shows).

use crate::measure::{Results, Row};

/// The summary of several rounds: per variant, per measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Variant names, in the order of the rounds (the first is the baseline).
    pub variants: Vec<String>,
    /// One entry per measure, in first-seen order.
    pub measures: Vec<Measure>,
    /// Rounds summarised.
    pub rounds: usize,
}

/// One measure across variants and rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// What was measured.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Whether more is better (as in [`Row`]).
    pub higher_is_better: bool,
    /// Per variant: the median (or, for counts, the total) over the rounds that measured it.
    pub values: Vec<Option<f64>>,
    /// Per variant after the baseline: the median of the per-round ratios to the baseline.
    pub ratios: Vec<Option<f64>>,
    /// Per variant: (smallest, largest) value over the rounds.
    pub ranges: Vec<Option<(f64, f64)>>,
}

/// Whether a measure is a count of failures (summed over rounds rather than taking a median).
fn is_count(unit: &str) -> bool {
    unit == "count"
}

/// The median of `v` (mean of the two middle values for an even count); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn value(results: &Results, name: &str) -> Option<f64> {
    results
        .rows
        .iter()
        .find(|row| row.name == name)
        .map(|row| row.value)
}

/// Summarises `rounds`, each the results of every variant in the same order.
pub fn summarise(rounds: &[Vec<Results>]) -> Summary {
    let variants: Vec<String> = rounds
        .first()
        .map(|r| r.iter().map(|v| v.variant.clone()).collect())
        .unwrap_or_default();
    let mut keys: Vec<&Row> = Vec::new();
    for row in rounds.iter().flatten().flat_map(|r| r.rows.iter()) {
        if !keys
            .iter()
            .any(|k| k.name == row.name && k.unit == row.unit)
        {
            keys.push(row);
        }
    }
    let measures = keys
        .into_iter()
        .map(|row| measure(rounds, variants.len(), row))
        .collect();
    Summary {
        variants,
        measures,
        rounds: rounds.len(),
    }
}

fn measure(rounds: &[Vec<Results>], n: usize, row: &Row) -> Measure {
    let (name, unit) = (row.name.clone(), row.unit.clone());
    let per_variant = |i: usize| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|r| r.get(i).and_then(|v| value(v, &name)))
            .collect()
    };
    let mut values = Vec::with_capacity(n);
    let mut ranges = Vec::with_capacity(n);
    for i in 0..n {
        let mut v = per_variant(i);
        ranges.push(
            v.iter()
                .map(|&x| (x, x))
                .reduce(|(lo, hi), (x, _)| (lo.min(x), hi.max(x))),
        );
        values.push(if is_count(&unit) {
            (!v.is_empty()).then(|| v.iter().sum())
        } else {
            median(&mut v)
        });
    }
    let ratios = (1..n)
        .map(|i| {
            let mut per_round: Vec<f64> = rounds
                .iter()
                .filter_map(|r| {
                    let base = value(r.first()?, &name)?;
                    let v = value(r.get(i)?, &name)?;
                    (base != 0.0).then(|| v / base)
                })
                .collect();
            if is_count(&unit) {
                None
            } else {
                median(&mut per_round)
            }
        })
        .collect();
    Measure {
        name,
        unit,
        higher_is_better: row.higher_is_better,
        values,
        ratios,
        ranges,
    }
}

impl Summary {
    /// The summary as results (the medians), for the table and JSON of a single round.
    pub fn as_results(&self) -> Vec<Results> {
        self.variants
            .iter()
            .enumerate()
            .map(|(i, variant)| Results {
                variant: variant.clone(),
                rows: self
                    .measures
                    .iter()
                    .filter_map(|m| {
                        let value = m.values.get(i).copied().flatten()?;
                        Some(Row {
                            name: m.name.clone(),
                            value,
                            unit: m.unit.clone(),
                            higher_is_better: m.higher_is_better,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(variant: &str, rows: &[(&str, f64, &str)]) -> Results {
        Results {
            variant: variant.into(),
            rows: rows
                .iter()
                .map(|(name, value, unit)| Row {
                    name: (*name).into(),
                    value: *value,
                    unit: (*unit).into(),
                    higher_is_better: true,
                })
                .collect(),
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn ratios_are_medians_of_same_round_ratios() {
        // Round ratios 0.5, 0.25 and 0.6: the median ratio is 0.5, which is not the ratio of
        // the median values (4 / 10 = 0.4).
        let rounds = vec![
            vec![
                results("direct", &[("tput", 8.0, "Gbit/s")]),
                results("ztunnel", &[("tput", 4.0, "Gbit/s")]),
            ],
            vec![
                results("direct", &[("tput", 16.0, "Gbit/s")]),
                results("ztunnel", &[("tput", 4.0, "Gbit/s")]),
            ],
            vec![
                results("direct", &[("tput", 10.0, "Gbit/s")]),
                results("ztunnel", &[("tput", 6.0, "Gbit/s")]),
            ],
        ];
        let s = summarise(&rounds);
        assert_eq!(s.rounds, 3);
        assert_eq!(s.variants, ["direct", "ztunnel"]);
        let m = &s.measures[0];
        assert_eq!(m.values, [Some(10.0), Some(4.0)]);
        assert_eq!(m.ratios, [Some(0.5)]);
        assert_eq!(m.ranges, [Some((8.0, 16.0)), Some((4.0, 6.0))]);
    }

    #[test]
    fn failure_counts_add_up_and_missing_measures_stay_empty() {
        let rounds = vec![
            vec![
                results("direct", &[("failed", 0.0, "count")]),
                results("ztunnel", &[("failed", 0.0, "count"), ("rss", 9.0, "MiB")]),
            ],
            vec![
                results("direct", &[("failed", 0.0, "count")]),
                results("ztunnel", &[("failed", 2.0, "count"), ("rss", 11.0, "MiB")]),
            ],
        ];
        let s = summarise(&rounds);
        let failed = &s.measures[0];
        assert_eq!(failed.values, [Some(0.0), Some(2.0)]);
        assert_eq!(failed.ratios, [None]);
        let rss = &s.measures[1];
        assert_eq!(rss.values, [None, Some(10.0)]);
        assert_eq!(rss.ratios, [None]);
        let table = s.as_results();
        assert_eq!(table[0].rows.len(), 1);
        assert_eq!(table[1].rows.len(), 2);
    }
}
