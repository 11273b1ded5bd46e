//! The results table (and JSON) with ratios to the baseline variant.

use std::fmt::Write;

use crate::measure::Results;
use crate::rounds::Summary;

/// A table: one row per measure, one column per variant, then one ratio column per
/// non-baseline variant (`value / baseline value`; for latency a ratio above 1 is worse).
pub fn table(all: &[Results]) -> String {
    let Some(base) = all.first() else {
        return String::from("no results\n");
    };
    let mut names: Vec<(String, String)> = Vec::new();
    for r in all {
        for row in &r.rows {
            let key = (row.name.clone(), row.unit.clone());
            if !names.contains(&key) {
                names.push(key);
            }
        }
    }
    let mut header = vec!["measure".to_owned()];
    header.extend(all.iter().map(|r| r.variant.clone()));
    header.extend(
        all.iter()
            .skip(1)
            .map(|r| format!("{}/{}", r.variant, base.variant)),
    );
    let mut lines = vec![header];
    for (name, unit) in &names {
        let value = |r: &Results| {
            r.rows
                .iter()
                .find(|row| &row.name == name)
                .map(|row| row.value)
        };
        let mut line = vec![format!("{name} ({unit})")];
        line.extend(
            all.iter()
                .map(|r| value(r).map_or("-".into(), |v| format!("{v:.2}"))),
        );
        line.extend(all.iter().skip(1).map(|r| match (value(r), value(base)) {
            (Some(v), Some(b)) if b != 0.0 => format!("{:.2}x", v / b),
            _ => "-".into(),
        }));
        lines.push(line);
    }
    format_lines(&lines)
}

/// Aligns `lines` into columns: the first left-aligned, the rest right-aligned.
fn format_lines(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// A table of several rounds: per variant the median (for counts, the total) and the range
/// over the rounds, then the median of the per-round ratios to the first variant.
pub fn summary_table(s: &Summary) -> String {
    let Some(base) = s.variants.first() else {
        return String::from("no results\n");
    };
    let mut header = vec![format!("measure (median of {} rounds)", s.rounds)];
    header.extend(s.variants.iter().cloned());
    header.extend(s.variants.iter().skip(1).map(|v| format!("{v}/{base}")));
    let mut lines = vec![header];
    for m in &s.measures {
        let mut line = vec![format!("{} ({})", m.name, m.unit)];
        line.extend(m.values.iter().zip(&m.ranges).map(|(v, r)| match (v, r) {
            (Some(v), Some((lo, hi))) if s.rounds > 1 && lo != hi => {
                format!("{v:.2} [{lo:.2}-{hi:.2}]")
            }
            (Some(v), _) => format!("{v:.2}"),
            (None, _) => "-".into(),
        }));
        line.extend(
            m.ratios
                .iter()
                .map(|r| r.map_or("-".into(), |r| format!("{r:.2}x"))),
        );
        lines.push(line);
    }
    format_lines(&lines)
}

/// The results as a JSON array of `{variant, rows: [{name, value, unit, higher_is_better}]}`.
pub fn json(all: &[Results]) -> String {
    let v: Vec<serde_json::Value> = all
        .iter()
        .map(|r| {
            let rows: Vec<serde_json::Value> = r
                .rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "name": row.name, "value": row.value, "unit": row.unit,
                        "higher_is_better": row.higher_is_better,
                    })
                })
                .collect();
            serde_json::json!({ "variant": r.variant, "rows": rows })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Row;

    fn results(variant: &str, tput: f64, extra: Option<f64>) -> Results {
        let mut rows = vec![Row {
            name: "throughput, 1 stream".into(),
            value: tput,
            unit: "Gbit/s".into(),
            higher_is_better: true,
        }];
        if let Some(v) = extra {
            rows.push(Row {
                name: "proxy memory".into(),
                value: v,
                unit: "MiB".into(),
                higher_is_better: false,
            });
        }
        Results {
            variant: variant.into(),
            rows,
        }
    }

    #[test]
    fn ratios_are_relative_to_the_first_variant() {
        let t = table(&[
            results("direct", 20.0, None),
            results("ztunnel", 5.0, Some(12.0)),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("direct") && lines[0].contains("ztunnel/direct"),
            "{t}"
        );
        assert!(lines[1].starts_with("throughput, 1 stream (Gbit/s)"), "{t}");
        assert!(lines[1].ends_with("0.25x"), "{t}");
        assert!(lines[2].contains("12.00") && lines[2].ends_with('-'), "{t}");
    }

    #[test]
    fn json_lists_every_row() {
        let v: serde_json::Value =
            serde_json::from_str(&json(&[results("direct", 1.5, None)])).expect("json");
        assert_eq!(v[0]["variant"], "direct");
        assert_eq!(v[0]["rows"][0]["value"], 1.5);
    }
}
