//! `skiff`: a Kubernetes-compatible cluster in one binary.
//!
//! This crate only parses the command line and wires the component crates together; see
//! `ARCHITECTURE.md` for what each of them does.

mod cli;
mod commands;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the API server churns through short-lived JSON
/// values, and with glibc a third of its CPU went to `malloc`, `free` and
/// `malloc_consolidate` in the density benchmark, while its heap fragmented.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::RuntimeService(args) = &cli.command {
        // No log subscriber: the service's clones log from inside the containers, whose
        // stderr is the container's (its errors go back to the agent in its replies).
        return match skiff_agent::containers::service::serve_inherited(&args.root) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // Daemons log what they do; commands a user types (up, down...) print only their
    // result, not the connection attempts of their polling.
    let default_filter = match cli.command {
        cli::Command::Server(_)
        | cli::Command::Agent(_)
        | cli::Command::Proxy(_)
        | cli::Command::Dns(_) => "info,libcgroups=error,libcontainer=error",
        _ => "warn,kube_client=off,libcgroups=error,libcontainer=error",
    };
    // (youki's crates warn at every container deletion about controllers the host lacks,
    // net_cls and net_prio here: noise for a node's log.)
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
