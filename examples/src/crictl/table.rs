//! Tables as crictl prints them: Go's `text/tabwriter` with crictl's settings
//! (minimum cell width 20, padding 3, spaces; the last cell of a row is not
//! padded).

/// Rows of cells, rendered with tabwriter's alignment rules.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    min_width: usize,
    padding: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// crictl's `newDefaultTableDisplay()`: minimum width 20, padding 3.
    pub(crate) fn new() -> Self {
        Self::with_min_width(20)
    }

    /// A table with another minimum cell width (crictl's `runtime-config`
    /// uses 10).
    pub(crate) fn with_min_width(min_width: usize) -> Self {
        Self {
            min_width,
            padding: 3,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as text, one line per row, each ending in a newline.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Go's tabwriter aligns column k over each run of consecutive lines
        // that have a cell in column k followed by another cell.
        let mut widths: Vec<Vec<usize>> = vec![Vec::new(); self.rows.len()];
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        for column in 0..columns.saturating_sub(1) {
            let mut line = 0;
            while line < self.rows.len() {
                if self.rows[line].len() <= column + 1 {
                    line += 1;
                    continue;
                }
                let start = line;
                while line < self.rows.len() && self.rows[line].len() > column + 1 {
                    line += 1;
                }
                let width = self.rows[start..line]
                    .iter()
                    .map(|row| row[column].chars().count() + self.padding)
                    .max()
                    .unwrap_or(0)
                    .max(self.min_width);
                for w in &mut widths[start..line] {
                    w.push(width);
                }
            }
        }
        for (row, widths) in self.rows.iter().zip(&widths) {
            for (i, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if let Some(width) = widths.get(i) {
                    let pad = width.saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_pad_to_twenty_or_widest_plus_three_and_the_last_cell_is_bare() {
        let mut t = Table::new();
        t.row(["POD ID", "CREATED", "STATE", "NAME"]);
        t.row([
            "0123456789abc",
            "2 seconds ago",
            "Ready",
            "a-long-pod-name-here",
        ]);
        t.row(["fedcba", "About a minute ago", "NotReady", "x"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "POD ID              CREATED              STATE               NAME"
        );
        assert_eq!(
            lines[1],
            "0123456789abc       2 seconds ago        Ready               a-long-pod-name-here"
        );
        assert_eq!(
            lines[2],
            "fedcba              About a minute ago   NotReady            x"
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_header_alone_is_padded_too() {
        let mut t = Table::new();
        t.row(["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
        assert_eq!(
            t.render(),
            "IMAGE               TAG                 IMAGE ID            SIZE\n"
        );
    }

    #[test]
    fn narrow_minimum_width() {
        let mut t = Table::with_min_width(10);
        t.row(["cgroup driver:", "SYSTEMD"]);
        assert_eq!(t.render(), "cgroup driver:   SYSTEMD\n");
    }

    #[test]
    fn ragged_rows_align_per_block_of_lines() {
        let mut t = Table::with_min_width(0);
        t.row(["a", "b", "c"]);
        t.row(["long-cell", "d"]);
        t.row(["e"]);
        assert_eq!(t.render(), "a           b   c\nlong-cell   d\ne\n");
    }

    #[test]
    fn empty_table_renders_nothing() {
        assert_eq!(Table::new().render(), "");
    }
}
