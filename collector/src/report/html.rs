//! The self-contained HTML report: one file, inline CSS (with a print stylesheet) and inline SVG
//! charts, no script, no external reference of any kind. Rendered by askama with HTML escaping, so
//! endpoint strings (host names, products, MCP targets) are text, never markup.

use askama::Template;

use super::data::{Report, Series, change_text};
use super::tables::Table;

/// Colours of chart lines, in series order.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A line chart laid out in SVG user units (numbers only reach the markup).
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: &'static str,
    pub width: u32,
    pub height: u32,
    pub lines: Vec<ChartLine>,
    pub y_ticks: Vec<(f64, i64)>,
    pub x_labels: Vec<(f64, String)>,
    pub plot_left: f64,
    pub plot_right: f64,
    pub plot_bottom: f64,
}

#[derive(Debug, Clone)]
pub struct ChartLine {
    pub name: String,
    pub color: &'static str,
    pub points: String,
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 240;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 32.0;

/// Lays out one chart of weekly series.
pub fn chart(title: &'static str, week_labels: &[String], series: &[Series]) -> Chart {
    let max = series
        .iter()
        .flat_map(|s| s.hosts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_right = f64::from(WIDTH) - RIGHT;
    let plot_bottom = f64::from(HEIGHT) - BOTTOM;
    let steps = week_labels.len().saturating_sub(1).max(1) as f64;
    let x = |i: usize| LEFT + (plot_right - LEFT) * i as f64 / steps;
    let y = |v: i64| plot_bottom - (plot_bottom - TOP) * v as f64 / max as f64;
    let lines = series
        .iter()
        .enumerate()
        .map(|(index, s)| ChartLine {
            name: s.name.clone(),
            color: PALETTE[index % PALETTE.len()],
            points: s
                .hosts
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    let y_ticks = [0, max / 2, max]
        .into_iter()
        .map(|v| (y(v), v))
        .collect::<Vec<_>>();
    let every = week_labels.len().div_ceil(7).max(1);
    let x_labels = week_labels
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, label)| (x(i), label.clone()))
        .collect();
    Chart {
        title,
        width: WIDTH,
        height: HEIGHT,
        lines,
        y_ticks,
        x_labels,
        plot_left: LEFT,
        plot_right,
        plot_bottom,
    }
}

#[derive(Template)]
#[template(path = "report/report.html")]
struct ReportPage<'a> {
    report: &'a Report,
    tables: &'a [Table],
    charts: Vec<Chart>,
    hosts_change: String,
    users_change: String,
}

impl ReportPage<'_> {
    fn legend_y(&self, index: &usize) -> f64 {
        TOP + 6.0 + 16.0 * *index as f64
    }
    fn legend_x(&self, chart: &Chart) -> f64 {
        chart.plot_right + 14.0
    }
}

/// Week labels (`YYYY-MM-DD`) of a report.
pub fn week_labels(report: &Report) -> Vec<String> {
    report
        .trends
        .week_starts_ms
        .iter()
        .map(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .and_then(|t| t.get(..10).map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

/// The HTML document.
pub fn render(report: &Report, tables: &[Table]) -> Result<Vec<u8>, askama::Error> {
    let labels = week_labels(report);
    let page = ReportPage {
        report,
        tables,
        charts: vec![
            chart(
                "Hosts per week, by category",
                &labels,
                &report.trends.by_category,
            ),
            chart(
                "Hosts per week, top products",
                &labels,
                &report.trends.top_products,
            ),
        ],
        hosts_change: change_text(&report.summary.hosts_with_unsanctioned_ai),
        users_change: change_text(&report.summary.users_with_unsanctioned_ai),
    };
    Ok(page.render()?.into_bytes())
}
