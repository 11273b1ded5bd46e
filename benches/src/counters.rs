//! Reading ztunnel's Istio counters from its Prometheus text, to prove traffic went through it.

/// The counter of connections a ztunnel opened (DESIGN.md section 6).
pub const CONNECTIONS_OPENED: &str = "istio_tcp_connections_opened_total";

/// Sum of `metric` over every series whose `reporter` label is `reporter` (`source` or
/// `destination`) in a Prometheus exposition text.
pub fn sum(text: &str, metric: &str, reporter: &str) -> f64 {
    let label = format!("reporter=\"{reporter}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            // `metric{labels} value` (not a longer metric name that starts the same).
            let labels = rest.strip_prefix('{')?;
            let (labels, value) = labels.rsplit_once('}')?;
            labels
                .contains(&label)
                .then_some(value)?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP istio_tcp_connections_opened The number of TCP connections opened.
# TYPE istio_tcp_connections_opened counter
istio_tcp_connections_opened_total{reporter="destination",source_workload="client"} 7
istio_tcp_connections_opened_total{reporter="destination",source_workload="other"} 3
istio_tcp_connections_opened_total{reporter="source",source_workload="client"} 11
istio_tcp_connections_opened_total_extra{reporter="destination"} 100
istio_tcp_connections_closed_total{reporter="destination"} 5
"#;

    #[test]
    fn sums_the_series_of_one_reporter() {
        assert_eq!(sum(TEXT, CONNECTIONS_OPENED, "destination"), 10.0);
        assert_eq!(sum(TEXT, CONNECTIONS_OPENED, "source"), 11.0);
        assert_eq!(
            sum(TEXT, "istio_tcp_connections_closed_total", "source"),
            0.0
        );
        assert_eq!(sum("", CONNECTIONS_OPENED, "destination"), 0.0);
    }
}
