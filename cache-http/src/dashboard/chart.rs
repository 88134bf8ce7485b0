//! Line charts drawn on the server as SVG: no script, no library, readable without colour
//! (each series also has its own dash pattern, and a text summary for screen readers).

use std::fmt::Write as _;

use super::page::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// Colours that keep at least 4.5:1 against white, each with its own dash pattern.
const STYLES: [(&str, &str); 6] = [
    ("#1f5fa8", ""),
    ("#b3261e", "6 3"),
    ("#1b7a36", "2 3"),
    ("#6a3fa0", "8 3 2 3"),
    ("#8a4b08", "1 2"),
    ("#0a6e75", "10 4"),
];

/// One line of a chart.
#[derive(Debug)]
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    /// `(seconds before now, value)`; `None` breaks the line (no data in that interval).
    pub(crate) points: Vec<(f64, Option<f64>)>,
}

/// A chart over the last `window` seconds.
#[derive(Debug)]
pub(crate) struct Chart<'a> {
    pub(crate) id: &'a str,
    pub(crate) title: &'a str,
    pub(crate) unit: &'a str,
    /// A fixed top of the scale (100 for percentages); otherwise from the data.
    pub(crate) max: Option<f64>,
    pub(crate) window: f64,
    pub(crate) series: Vec<Series<'a>>,
}

impl Chart<'_> {
    /// The chart as an `<svg>` element, then its legend. `data-latest` holds each series'
    /// latest value in the window (`label=value`, or `label=none`).
    pub(crate) fn render(&self) -> String {
        let data_max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .fold(0.0_f64, f64::max);
        let top = self.max.unwrap_or_else(|| nice_ceiling(data_max));
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x = |ago: f64| LEFT + plot_w * (1.0 - (ago / self.window).clamp(0.0, 1.0));
        let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));

        let latest: Vec<String> = self
            .series
            .iter()
            .map(|s| match s.points.iter().rev().find_map(|p| p.1) {
                Some(v) => format!("{}={}", s.label, format_value(v)),
                None => format!("{}=none", s.label),
            })
            .collect();
        let summary = if self.series.iter().all(|s| s.points.iter().all(|p| p.1.is_none())) {
            "no data yet".to_owned()
        } else {
            self.series
                .iter()
                .map(|s| {
                    let values: Vec<f64> = s.points.iter().filter_map(|p| p.1).collect();
                    match values.last() {
                        Some(last) => format!(
                            "{}: now {}{u}, highest {}{u}",
                            s.label,
                            format_value(*last),
                            format_value(values.iter().copied().fold(f64::MIN, f64::max)),
                            u = self.unit
                        ),
                        None => format!("{}: no data", s.label),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };

        let mut svg = String::new();
        let id = escape(self.id);
        let _ = write!(
            svg,
            r#"<svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d" data-latest="{}">"#,
            escape(&latest.join(","))
        );
        let _ = write!(
            svg,
            r#"<title id="{id}-t">{} ({}) over the last {}</title><desc id="{id}-d">{}</desc>"#,
            escape(self.title),
            escape(self.unit.trim()),
            span(self.window).trim_start_matches('−'),
            escape(&summary)
        );
        for fraction in [0.0, 0.5, 1.0] {
            let value = top * fraction;
            let gy = y(value);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{gy:.1}" y2="{gy:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                LEFT - 6.0,
                gy + 4.0,
                escape(&format_value(value))
            );
        }
        for (ago, label) in [
            (self.window, span(self.window)),
            (self.window / 2.0, span(self.window / 2.0)),
            (0.0, "now".to_owned()),
        ] {
            let anchor = if ago == 0.0 {
                "end"
            } else if ago == self.window {
                "start"
            } else {
                "middle"
            };
            let _ = write!(
                svg,
                r#"<text class="axis" x="{:.1}" y="{}" text-anchor="{anchor}">{label}</text>"#,
                x(ago),
                HEIGHT - 6.0
            );
        }
        for (n, series) in self.series.iter().enumerate() {
            let (colour, dash) = STYLES[n % STYLES.len()];
            let dash = if dash.is_empty() {
                String::new()
            } else {
                format!(r#" stroke-dasharray="{dash}""#)
            };
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(ago, value) in &series.points {
                match value {
                    Some(v) => runs.last_mut().map_or((), |run| run.push((x(ago), y(v)))),
                    None if runs.last().is_some_and(|run| !run.is_empty()) => runs.push(Vec::new()),
                    None => {}
                }
            }
            for run in runs.iter().filter(|run| !run.is_empty()) {
                let points: Vec<String> = run.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
                if run.len() == 1 {
                    let (px, py) = run[0];
                    let _ = write!(
                        svg,
                        r#"<circle cx="{px:.1}" cy="{py:.1}" r="2.5" fill="{colour}" data-series="{}"/>"#,
                        escape(series.label)
                    );
                } else {
                    let _ = write!(
                        svg,
                        r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}" data-series="{}"/>"#,
                        points.join(" "),
                        escape(series.label)
                    );
                }
            }
        }
        svg.push_str("</svg>");
        svg.push_str(r#"<ul class="legend">"#);
        for (n, series) in self.series.iter().enumerate() {
            let (colour, dash) = STYLES[n % STYLES.len()];
            let dash = if dash.is_empty() {
                String::new()
            } else {
                format!(r#" stroke-dasharray="{dash}""#)
            };
            let _ = write!(
                svg,
                r#"<li><svg class="key" viewBox="0 0 24 8" aria-hidden="true"><line x1="0" x2="24" y1="4" y2="4" stroke="{colour}" stroke-width="3"{dash}/></svg>{}</li>"#,
                escape(series.label)
            );
        }
        svg.push_str("</ul>");
        svg
    }
}

/// `seconds` ago for an axis: `−60 min`, `−30 s`.
fn span(seconds: f64) -> String {
    if seconds >= 120.0 {
        format!("−{} min", format_value((seconds / 60.0).round()))
    } else {
        format!("−{} s", format_value(seconds.round()))
    }
}

/// A round top for a scale: 1, 2 or 5 times a power of ten, at least `value`.
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|top| *top >= value)
        .unwrap_or(10.0 * power)
}

/// A value for people: at most three significant digits.
pub(crate) fn format_value(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}").trim_end_matches(".0").to_owned()
    } else if value.abs() >= 0.01 {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{value:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_values() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(format_value(93.456), "93.5");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(250.4), "250");
    }

    #[test]
    fn lines_break_where_data_is_missing() {
        let chart = Chart {
            id: "c",
            title: "Hit rate",
            unit: "%",
            max: Some(100.0),
            window: 60.0,
            series: vec![Series {
                label: "projects",
                points: vec![(50.0, Some(10.0)), (40.0, Some(20.0)), (30.0, None), (20.0, Some(90.0))],
            }],
        };
        let svg = chart.render();
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "a lone point is a dot");
        assert!(svg.contains(r#"data-latest="projects=90""#), "{svg}");
        assert!(svg.contains("projects: now 90%, highest 90%"), "{svg}");
    }
}
