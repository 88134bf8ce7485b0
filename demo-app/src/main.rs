//! `demo-app`: serve the hackathon-judging API, or run one of its maintenance commands.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use demo_app::{
    airtable,
    app::{self, AppError},
    commands,
    config::{Cli, Command},
};
use tracing_subscriber::EnvFilter;

/// glibc's malloc keeps what the cache's churn frees in its arenas: in the soak, an in-memory
/// store of 128 MiB under random-id misses peaked at 366 MiB RSS with it and 110 MiB with
/// mimalloc (guide: Troubleshooting, "Memory: the allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    // Commands print their own results; only the server logs at `info` by default.
    let default_filter = if serving { "info,sqlx=warn" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = &cli.config;
    let result: Result<(), AppError> = match &cli.command {
        None | Some(Command::Serve) => app::serve(config).await,
        Some(Command::Sweep(args)) => commands::sweep(config, args).await,
        Some(Command::Warm(args)) => commands::warm(config, args).await,
        Some(Command::Secret) => commands::secret(),
        Some(Command::Schema) => commands::schema(),
        Some(Command::Seed) => commands::seed(config).await,
        Some(Command::Flush(args)) => commands::flush(config, args).await,
        Some(Command::Outbox(args)) => commands::outbox(config, args).await,
        Some(Command::Airtable(command)) => airtable::command(config, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = format!("error: {err}");
            let mut source = std::error::Error::source(&err);
            // Causes already spelled out in the message above them are not repeated.
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(&format!("\n  caused by: {text}"));
                }
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
