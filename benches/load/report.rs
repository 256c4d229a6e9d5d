//! The results: one value per (scenario, metric, column) and repetition; printed as one table of
//! medians with their range, and the ratios ssebridge/nginx and ssebridge/direct of the medians.

use crate::targets::Target;

struct Row {
    scenario: String,
    metric: String,
    /// Values per column: direct, nginx, ssebridge.
    cells: [Vec<f64>; 3],
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

fn column(target: Target) -> usize {
    match target {
        Target::Direct => 0,
        Target::Nginx => 1,
        Target::Ssebridge => 2,
    }
}

impl Report {
    pub fn add(&mut self, scenario: &str, metric: &str, target: Target, value: f64) {
        if !value.is_finite() {
            return;
        }
        let at = match self
            .rows
            .iter()
            .position(|r| r.scenario == scenario && r.metric == metric)
        {
            Some(at) => at,
            None => {
                self.rows.push(Row {
                    scenario: scenario.to_owned(),
                    metric: metric.to_owned(),
                    cells: Default::default(),
                });
                self.rows.len() - 1
            }
        };
        self.rows[at].cells[column(target)].push(value);
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub fn median(&self, scenario: &str, metric: &str, target: Target) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.metric == metric)
            .and_then(|r| median(&r.cells[column(target)]))
    }

    /// The table, in Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| scenario | metric | direct | nginx | ssebridge | ssebridge/nginx | ssebridge/direct |\n\
             |---|---|---|---|---|---|---|\n",
        );
        // Scenarios in the order they ran; within one, metrics in a fixed order.
        let mut rows: Vec<(usize, usize, &Row)> = self
            .rows
            .iter()
            .map(|r| {
                let scenario = self.rows.iter().position(|x| x.scenario == r.scenario);
                (scenario.unwrap_or(0), rank(&r.metric), r)
            })
            .collect();
        rows.sort_by_key(|(scenario, rank, _)| (*scenario, *rank));
        for (_, _, row) in rows {
            let [d, n, s] = &row.cells;
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                row.scenario,
                row.metric,
                cell(d),
                cell(n),
                cell(s),
                ratio(s, n),
                ratio(s, d)
            ));
        }
        out.push_str(
            "\nCells: median [min - max] over the repetitions; ratios of the medians. \
             Latencies in µs; \"added\" = target minus direct in the same repetition.\n",
        );
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        out
    }
}

/// Where a metric goes within its scenario.
fn rank(metric: &str) -> usize {
    const ORDER: [&str; 21] = [
        "events/s delivered",
        "msg/s delivered",
        "events/s",
        "MB/s",
        "highest msg/s sustained",
        "latency p50 (µs)",
        "latency p99 (µs)",
        "latency p99.9 (µs)",
        "added latency p50 (µs)",
        "added latency p99 (µs)",
        "added latency p99.9 (µs)",
        "proxy CPU s per 1M events",
        "proxy CPU s per 1M msgs",
        "idle process RSS (MiB)",
        "KiB per stream: (RSS - idle RSS) / streams",
        "streams held",
        "RSS at the top (MiB)",
        "streams per GiB of RSS",
        "machine CPU busy (%)",
        "CPU of other work (%)",
        "CPU stolen by the host (%)",
    ];
    ORDER
        .iter()
        .position(|m| *m == metric)
        .unwrap_or(ORDER.len())
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", a);
        let mut grouped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                grouped.push(' ');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(values: &[f64]) -> String {
    let Some(m) = median(values) else {
        return "-".to_owned();
    };
    if values.len() == 1 {
        return num(m);
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} [{} - {}]", num(m), num(min), num(max))
}

fn ratio(a: &[f64], b: &[f64]) -> String {
    match (median(a), median(b)) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    }
}

/// The value at quantile `q` of sorted `v` (nearest rank).
pub fn quantile(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64
}
