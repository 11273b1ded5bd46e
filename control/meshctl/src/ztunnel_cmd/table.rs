//! Plain-text tables with aligned columns (the style of `kubectl get`).

/// Renders `rows` (the first one is the header) with columns padded to their widest cell and
/// separated by three spaces; no trailing spaces.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["NAME".to_owned(), "IP".to_owned()],
            vec!["a-long-name".to_owned(), "10.0.0.1".to_owned()],
            vec!["b".to_owned(), String::new()],
        ];
        assert_eq!(
            render(&rows),
            "NAME          IP\na-long-name   10.0.0.1\nb\n"
        );
    }
}
