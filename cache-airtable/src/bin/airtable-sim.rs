//! The Airtable simulator as a program, for the offline demo:
//!
//! ```text
//! airtable-sim [--addr 127.0.0.1:8787] [--token patSimulatorToken] [--requests-per-second 5]
//!              --base appXXXXXXXXXXXXXX [--base …] [--table Projects …]
//! ```
//!
//! Every `--table` is created in every `--base`. Point `AIRTABLE_API_URL` at the printed URL
//! and seed it over HTTP (create records), as a client seeds Airtable.

use std::{net::SocketAddr, process::ExitCode};

use cache_airtable::testing::{SimConfig, Simulator};

struct Args {
    addr: SocketAddr,
    config: SimConfig,
    bases: Vec<String>,
    tables: Vec<String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8787)),
        config: SimConfig::default(),
        bases: Vec::new(),
        tables: Vec::new(),
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--token" => args.config.token = value()?,
            "--requests-per-second" => {
                args.config.requests_per_second =
                    value()?.parse().map_err(|e| format!("--requests-per-second: {e}"))?;
            }
            "--base" => args.bases.push(value()?),
            "--table" => args.tables.push(value()?),
            "--help" | "-h" => {
                return Err("usage: airtable-sim [--addr HOST:PORT] [--token TOKEN] [--requests-per-second N] --base appID... [--table NAME...]".to_owned());
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if args.bases.is_empty() {
        return Err("name at least one --base".to_owned());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let sim = match Simulator::start_with(args.config, args.addr).await {
        Ok(sim) => sim,
        Err(err) => {
            eprintln!("cannot listen on {}: {err}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    for base in &args.bases {
        sim.create_base(base);
        for table in &args.tables {
            sim.create_table(base, table);
        }
    }
    println!("Airtable simulator on {} (bases: {})", sim.url(), args.bases.join(", "));
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("cannot wait for Ctrl-C");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
