//! The report: one line per comparison (figures, ratio, target, pass or miss), the machine,
//! the date and the command, rendered as Markdown.

use std::{fmt::Write as _, time::Duration};

use crate::machine::Machine;

/// Whether a line meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target is met.
    Pass,
    /// The target is missed; the line's notes say why.
    Miss,
    /// No target: the figures are information.
    Info,
}

impl Verdict {
    /// `Pass` when `ok`, else `Miss`.
    pub fn from_check(ok: bool) -> Self {
        if ok { Self::Pass } else { Self::Miss }
    }

    /// Both must pass; information never turns a line into a miss.
    pub fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Self::Miss, _) | (_, Self::Miss) => Self::Miss,
            (Self::Pass, _) | (_, Self::Pass) => Self::Pass,
            (Self::Info, Self::Info) => Self::Info,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pass => "**pass**",
            Self::Miss => "**miss**",
            Self::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Line {
    /// The numbering (`1`, `5a`).
    pub number: String,
    /// What is compared.
    pub name: String,
    /// model-cache's figures.
    pub ours: String,
    /// The baseline's figures, naming the baseline.
    pub baseline: String,
    /// The headline ratio, as text (`1.12x`), or `—`.
    pub ratio: String,
    /// The target, as text (`≤ 1.20x`).
    pub target: String,
    /// Whether the target is met.
    pub verdict: Verdict,
    /// What else was measured to explain the figures (one bullet each).
    pub notes: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// When it ran (UTC).
    pub date: String,
    /// The command that produced it.
    pub command: String,
    /// How long the run took.
    pub elapsed: Duration,
    /// The lines, in the order.
    pub lines: Vec<Line>,
    /// How the figures were taken (one bullet each).
    pub method: Vec<String>,
}

impl Report {
    /// The table of every line.
    pub fn table(&self) -> String {
        let mut out = String::from("| # | line | model-cache | baseline | ratio | target | result |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for l in &self.lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                l.number,
                cell(&l.name),
                cell(&l.ours),
                cell(&l.baseline),
                cell(&l.ratio),
                cell(&l.target),
                l.verdict.label()
            );
        }
        out
    }

    /// The header block: machine, date, command.
    pub fn header(&self) -> String {
        let m = &self.machine;
        format!(
            "- **Command**: `{}` (took {:.0} s)\n- **Date**: {}\n- **Machine**: {} cores, {}; \
             Redis {} (one spawned `redis-server` on loopback, no persistence); {}; {}\n",
            self.command,
            self.elapsed.as_secs_f64(),
            self.date,
            m.cores,
            m.cpu,
            m.redis_version,
            m.redis_benchmark,
            m.rustc
        )
    }

    /// The summary counts: `7 pass, 2 miss, 3 info`.
    pub fn tally(&self) -> String {
        let count = |v: Verdict| self.lines.iter().filter(|l| l.verdict == v).count();
        format!(
            "{} pass, {} miss, {} information only",
            count(Verdict::Pass),
            count(Verdict::Miss),
            count(Verdict::Info)
        )
    }

    /// The whole report as a Markdown document.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("# Benchmark report\n\n");
        out.push_str(
            "Written by the bench target `benchmarks/benches/report/`; do not edit by hand, run the \
             command below again. What each line means is in the guide's \
             [Benchmarks](src/benchmarks.md) chapter.\n\n",
        );
        out.push_str(&self.header());
        let _ = writeln!(out, "- **Result**: {}\n", self.tally());
        out.push_str(&self.table());
        out.push_str("\nRatios are model-cache over the baseline: below 1 model-cache is faster (or smaller), ");
        out.push_str("except for throughput lines, where they are model-cache's rate over the baseline's.\n");
        out.push_str("\n## Notes per line\n");
        for l in &self.lines {
            if l.notes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n### {}. {}\n", l.number, l.name);
            for note in &l.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out.push_str("\n## Method\n\n");
        for m in &self.method {
            let _ = writeln!(out, "- {m}");
        }
        out
    }
}

/// Where a line with this number stands in the report: by its number, then its letter
/// (`2` < `9f` < `10a`, where text would put `10a` first).
pub fn line_order(number: &str) -> (u32, &str) {
    let digits = number.find(|c: char| !c.is_ascii_digit()).unwrap_or(number.len());
    (number[..digits].parse().unwrap_or(u32::MAX), &number[digits..])
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A latency for people: `52.1 µs`, `1.23 ms`, `2.41 s`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// A ratio for people: `1.12x`.
pub fn fmt_ratio(r: f64) -> String {
    format!("{r:.2}x")
}

/// A rate for people: `45,120/s`.
pub fn fmt_rate(per_second: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = per_second.round().max(0.0) as u64;
    format!("{}/s", thousands(n))
}

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `doc` with the text between the lines `begin` and `end` replaced by `content`; `None` when
/// the markers are missing.
pub fn replace_between(doc: &str, begin: &str, end: &str, content: &str) -> Option<String> {
    let start = doc.find(begin)? + begin.len();
    let stop = start + doc[start..].find(end)?;
    Some(format!("{}\n{}\n{}", &doc[..start], content.trim_end(), &doc[stop..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdicts: &[Verdict]) -> Report {
        Report {
            machine: Machine {
                cores: 2,
                cpu: "AMD EPYC".to_owned(),
                redis_version: "7.0.15".to_owned(),
                redis_benchmark: "redis-benchmark 7.0.15".to_owned(),
                rustc: "rustc 1.95.0".to_owned(),
            },
            date: "2026-04-01 12:00 UTC".to_owned(),
            command: "cargo bench -p model-cache-bench".to_owned(),
            elapsed: Duration::from_secs(95),
            lines: verdicts
                .iter()
                .enumerate()
                .map(|(i, &verdict)| Line {
                    number: (i + 1).to_string(),
                    name: "get | hit".to_owned(),
                    ours: "p50 60 µs".to_owned(),
                    baseline: "raw GET: p50 50 µs".to_owned(),
                    ratio: fmt_ratio(1.2),
                    target: "≤ 1.20x".to_owned(),
                    verdict,
                    notes: vec!["decode: 3 µs".to_owned()],
                })
                .collect(),
            method: vec!["interleaved".to_owned()],
        }
    }

    #[test]
    fn renders_the_table_header_and_notes() {
        let r = report(&[Verdict::Pass, Verdict::Miss, Verdict::Info]);
        let md = r.to_markdown();
        assert!(md.contains("| 1 | get \\| hit | p50 60 µs | raw GET: p50 50 µs | 1.20x | ≤ 1.20x | **pass** |"));
        assert!(md.contains("| 2 |") && md.contains("**miss**"));
        assert!(md.contains("1 pass, 1 miss, 1 information only"));
        assert!(md.contains("`cargo bench -p model-cache-bench` (took 95 s)"));
        assert!(md.contains("2 cores, AMD EPYC; Redis 7.0.15"));
        assert!(md.contains("### 2. get | hit\n\n- decode: 3 µs"));
    }

    #[test]
    fn verdicts_combine() {
        assert_eq!(Verdict::Pass.and(Verdict::Miss), Verdict::Miss);
        assert_eq!(Verdict::Info.and(Verdict::Pass), Verdict::Pass);
        assert_eq!(Verdict::Info.and(Verdict::Info), Verdict::Info);
        assert_eq!(Verdict::from_check(false), Verdict::Miss);
    }

    #[test]
    fn formats_figures() {
        assert_eq!(fmt_duration(Duration::from_nanos(2_345)), "2.35 µs");
        assert_eq!(fmt_duration(Duration::from_nanos(52_149)), "52.1 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1_234)), "1.23 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2_410)), "2.41 s");
        assert_eq!(fmt_rate(45_120.4), "45,120/s");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn lines_order_by_number_then_letter() {
        let mut numbers = vec!["10a", "9f", "2", "10b", "5b", "1", "5a", "9a"];
        numbers.sort_by_key(|n| line_order(n));
        assert_eq!(numbers, ["1", "2", "5a", "5b", "9a", "9f", "10a", "10b"]);
    }

    #[test]
    fn replaces_a_marked_block() {
        let doc = "intro\n<!-- begin -->\nold\n<!-- end -->\noutro\n";
        let out = replace_between(doc, "<!-- begin -->", "<!-- end -->", "new\n").unwrap();
        assert_eq!(out, "intro\n<!-- begin -->\nnew\n<!-- end -->\noutro\n");
        assert_eq!(
            replace_between("no markers", "<!-- begin -->", "<!-- end -->", "x"),
            None
        );
    }
}
