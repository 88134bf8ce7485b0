//! What the report ran on: cores, CPU model, server and tool versions.

use std::process::Command;

/// The machine and the software measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Cores the process may use.
    pub cores: usize,
    /// The CPU, as `/proc/cpuinfo` names it.
    pub cpu: String,
    /// The Redis server, from `INFO server` (`7.0.15`).
    pub redis_version: String,
    /// `redis-benchmark --version`.
    pub redis_benchmark: String,
    /// `rustc --version`.
    pub rustc: String,
}

impl Machine {
    /// Reads everything but the Redis version, which the caller takes from `INFO server`.
    pub fn detect(redis_version: String) -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| cpu_model(&text))
                .unwrap_or_else(|| "unknown".to_owned()),
            redis_version,
            redis_benchmark: tool_version(&crate::redis_benchmark::binary(), "--version"),
            rustc: tool_version("rustc", "--version"),
        }
    }
}

/// The first `model name` of a `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map(|(_, name)| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// `redis_version` of an `INFO` reply.
pub fn redis_version(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_owned())
}

/// The first line a tool prints for `flag`, or `unknown`.
fn tool_version(program: &str, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.lines().next().map(|l| l.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_model_and_redis_version() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info).as_deref(), Some("7.0.15"));
    }
}
