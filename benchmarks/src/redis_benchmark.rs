//! Running `redis-benchmark` (the binary named by `REDIS_BENCHMARK_BIN`, default
//! `redis-benchmark`) and reading its `--csv` output.

use std::time::Duration;

/// One line of `redis-benchmark --csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRow {
    /// The test (`GET`).
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency in milliseconds, when the output has it (Redis 7+).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, when the output has it (Redis 7+).
    pub p99_ms: Option<f64>,
}

/// Why `redis-benchmark` output could not be read, or the tool failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchmarkError {
    /// The output is not the CSV expected.
    #[error("unexpected redis-benchmark output ({0}): {1:?}")]
    Parse(&'static str, String),
    /// The tool could not be run or failed.
    #[error("redis-benchmark failed: {0}")]
    Run(String),
}

/// The binary run.
pub fn binary() -> String {
    std::env::var("REDIS_BENCHMARK_BIN").unwrap_or_else(|_| "redis-benchmark".to_owned())
}

/// Reads `redis-benchmark --csv` output: Redis 7's (a header line, then
/// `"test","rps","avg_latency_ms",...,"p50_latency_ms",...`) or Redis 6's (no header,
/// `"test","rps"`).
pub fn parse_csv(output: &str) -> Result<Vec<CsvRow>, BenchmarkError> {
    let mut columns: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let cells: Vec<String> = line.split(',').map(|c| c.trim().trim_matches('"').to_owned()).collect();
        if cells.first().map(String::as_str) == Some("test") {
            columns = Some(cells);
            continue;
        }
        let at = |name: &str, default: Option<usize>| -> Option<usize> {
            match &columns {
                Some(cols) => cols.iter().position(|c| c == name),
                None => default,
            }
        };
        let number = |index: Option<usize>| -> Option<f64> { cells.get(index?)?.parse().ok() };
        let test = cells
            .get(at("test", Some(0)).unwrap_or(0))
            .cloned()
            .ok_or_else(|| BenchmarkError::Parse("no test name", line.to_owned()))?;
        let rps = number(at("rps", Some(1))).ok_or_else(|| BenchmarkError::Parse("no rps", line.to_owned()))?;
        rows.push(CsvRow {
            test,
            rps,
            p50_ms: number(at("p50_latency_ms", None)),
            p99_ms: number(at("p99_latency_ms", None)),
        });
    }
    if rows.is_empty() {
        return Err(BenchmarkError::Parse("no result line", output.to_owned()));
    }
    Ok(rows)
}

/// What one `redis-benchmark -t get` run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct GetRun {
    /// The CSV line of `GET`.
    pub row: CsvRow,
    /// The command line, as a person would type it.
    pub command: String,
    /// Wall time of the run, tool start-up included.
    pub wall: Duration,
}

/// Runs `redis-benchmark -t get -c clients -n requests -d value_size --csv` against the
/// server on `127.0.0.1:port`. Without `-r` every `GET` reads the key `key:__rand_int__`: the
/// caller stores a value of `value_size` bytes there first.
pub async fn run_get(port: u16, clients: usize, requests: usize, value_size: usize) -> Result<GetRun, BenchmarkError> {
    let args = [
        "-h".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-t".to_owned(),
        "get".to_owned(),
        "-c".to_owned(),
        clients.to_string(),
        "-n".to_owned(),
        requests.to_string(),
        "-d".to_owned(),
        value_size.to_string(),
        "--csv".to_owned(),
    ];
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(binary())
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| BenchmarkError::Run(format!("cannot run {}: {e}", binary())))?;
    let wall = started.elapsed();
    if !output.status.success() {
        return Err(BenchmarkError::Run(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = parse_csv(&stdout)?
        .into_iter()
        .find(|r| r.test.eq_ignore_ascii_case("GET"))
        .ok_or_else(|| BenchmarkError::Parse("no GET line", stdout.clone().into_owned()))?;
    Ok(GetRun {
        row,
        command: format!("redis-benchmark {}", args.join(" ")),
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_7_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"GET\",\"43706.29\",\"0.952\",\"0.056\",\"0.903\",\"1.487\",\"2.871\",\"5.295\"\n";
        let rows = parse_csv(out).unwrap();
        assert_eq!(
            rows,
            [CsvRow {
                test: "GET".to_owned(),
                rps: 43706.29,
                p50_ms: Some(0.903),
                p99_ms: Some(2.871),
            }]
        );
    }

    #[test]
    fn reads_redis_6_csv_and_refuses_noise() {
        let rows = parse_csv("\"GET\",\"81234.56\"\n").unwrap();
        assert_eq!(rows[0].rps, 81234.56);
        assert_eq!(rows[0].p50_ms, None);
        assert!(parse_csv("").is_err());
        assert!(parse_csv("\"GET\",\"fast\"\n").is_err());
    }
}
