//! `llama-stack`: run a Llama Stack-compatible HTTP server from a run config or a built-in
//! distribution, and inspect the providers and distributions compiled in.
//!
//! ```text
//! llama-stack run starter --port 8321 --env OLLAMA_URL=http://localhost:11434/v1
//! llama-stack run ./config.yaml
//! llama-stack list-providers [inference]
//! llama-stack list-distributions
//! llama-stack print-config starter
//! ```
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llama_stack::config::{ServerConfig, StackConfig};
use llama_stack::core::api::Api;
use llama_stack::distribution::{distribution_yaml, DISTRIBUTIONS};
use llama_stack::server::{routes, Server, ServerOptions};
use llama_stack::Stack;

/// Llama Stack, in Rust.
#[derive(Debug, Parser)]
#[command(name = "llama-stack", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Llama Stack and OpenAI HTTP APIs.
    Run {
        /// A run config file (config.yaml / run.yaml) or a built-in distribution name.
        config: String,
        /// Port to listen on (default: $LLAMA_STACK_PORT, else 8321).
        #[arg(long, env = "LLAMA_STACK_PORT", default_value_t = 8321)]
        port: u16,
        /// Address to bind (default: the config's server.host, else all interfaces).
        #[arg(long)]
        host: Option<String>,
        /// Environment variables for ${env.*} substitution, as KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = 16 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Runtime worker threads serving requests (default: the config's server.workers,
        /// else one per CPU core).
        #[arg(long, env = "LLAMA_STACK_WORKERS", value_parser = clap::value_parser!(u32).range(1..))]
        workers: Option<u32>,
    },
    /// List the provider types compiled into this build.
    ListProviders {
        /// Only this API (e.g. inference).
        api: Option<String>,
    },
    /// List the built-in distributions.
    ListDistributions,
    /// Print a built-in distribution's run config.
    PrintConfig {
        /// The distribution name.
        distribution: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::ListDistributions => {
            for name in DISTRIBUTIONS {
                println!("{name}");
            }
            Ok(())
        }
        Command::PrintConfig { distribution } => {
            let yaml = distribution_yaml(&distribution).ok_or_else(|| {
                format!(
                    "unknown distribution '{distribution}' (built in: {})",
                    DISTRIBUTIONS.join(", ")
                )
            })?;
            print!("{yaml}");
            Ok(())
        }
        Command::ListProviders { api } => {
            let filter = match api.as_deref() {
                Some(name) => {
                    Some(Api::parse(name).ok_or_else(|| format!("unknown API '{name}'"))?)
                }
                None => None,
            };
            let mut specs = llama_stack_providers::builtin_providers();
            specs.retain(|s| filter.is_none_or(|a| s.api == a));
            specs.sort_by(|a, b| (a.api, &a.provider_type).cmp(&(b.api, &b.provider_type)));
            println!("{:<16} {:<36} DESCRIPTION", "API", "PROVIDER TYPE");
            for s in &specs {
                println!(
                    "{:<16} {:<36} {}",
                    s.api.as_str(),
                    s.provider_type,
                    s.description
                );
            }
            if specs.is_empty() {
                println!("(no provider types compiled into this build for this API)");
            }
            Ok(())
        }
        Command::Run {
            config,
            port,
            host,
            env,
            max_body_bytes,
            workers,
        } => {
            for pair in &env {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--env expects KEY=VALUE, got '{pair}'"))?;
                // Set before the runtime starts: no other thread reads the environment yet.
                std::env::set_var(k, v);
            }
            init_tracing();
            let config = load_config(&config)?;
            let threads = worker_threads(workers, &config.server);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            runtime.block_on(serve(config, port, host, max_body_bytes))
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LLAMA_STACK_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Reads a run config file or a built-in distribution's config (with `${env.*}` substituted).
fn load_config(config: &str) -> Result<StackConfig, String> {
    let loaded = if Path::new(config).is_file() {
        StackConfig::from_file(config)
    } else if let Some(yaml) = distribution_yaml(config) {
        StackConfig::from_yaml_str(yaml)
    } else {
        return Err(format!(
            "'{config}' is neither a run config file nor a built-in distribution ({})",
            DISTRIBUTIONS.join(", ")
        ));
    };
    loaded.map_err(|e| e.to_string())
}

/// Runtime worker threads: `--workers`, else the config's `server.workers`, else one per
/// CPU core. Llama Stack's `workers` counts uvicorn processes, each serving on one core; one
/// Rust process serves on as many cores as it has runtime threads.
fn worker_threads(cli: Option<u32>, server: &ServerConfig) -> usize {
    match cli {
        Some(n) => n as usize,
        None => server.worker_threads(),
    }
}

async fn serve(
    config: StackConfig,
    port: u16,
    host: Option<String>,
    max_body_bytes: usize,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let stack = Stack::builder()
        .config(config)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let host = host.or_else(|| stack.config().server.host.clone());
    let ip: IpAddr = match host.as_deref() {
        Some(h) => h
            .parse()
            .map_err(|_| format!("--host / server.host: '{h}' is not an IP address"))?,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let options = ServerOptions {
        body_limit: max_body_bytes,
        ..ServerOptions::default()
    };
    let server = match Server::bind(&stack, SocketAddr::new(ip, port), options.clone()).await {
        Ok(s) => s,
        // Hosts without IPv6: fall back to all IPv4 interfaces.
        Err(_) if host.is_none() => {
            Server::bind(&stack, SocketAddr::from(([0, 0, 0, 0], port)), options)
                .await
                .map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };

    let providers = stack
        .providers()
        .list()
        .await
        .map(|l| l.data)
        .unwrap_or_default();
    tracing::info!(distro = stack.config().name(), "stack built");
    for p in &providers {
        tracing::info!(api = %p.api, provider_id = %p.provider_id, provider_type = %p.provider_type, "provider");
    }
    if providers.is_empty() {
        tracing::warn!("no providers are configured");
    }
    let auth = stack
        .config()
        .server
        .auth
        .as_ref()
        .and_then(|a| a.provider_config.as_ref())
        .and_then(|p| p.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("none")
        .to_owned();
    tracing::info!(
        routes = routes::table().len(),
        auth = %auth,
        quota = stack.config().server.quota.is_some(),
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        startup_ms = started.elapsed().as_millis() as u64,
        "listening on {}://{}",
        if server.is_tls() { "https" } else { "http" },
        server.local_addr()
    );
    server
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_come_from_the_flag_then_the_config_then_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let absent = ServerConfig::default();
        let three = ServerConfig {
            workers: Some(3),
            ..ServerConfig::default()
        };
        assert_eq!(worker_threads(None, &absent), cores);
        assert_eq!(worker_threads(None, &three), 3);
        assert_eq!(worker_threads(Some(5), &three), 5);
        assert_eq!(worker_threads(Some(1), &absent), 1);
    }

    #[test]
    fn workers_flag_rejects_zero() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        assert!(parse(&["llama-stack", "run", "starter", "--workers", "0"]).is_err());
        assert!(matches!(
            parse(&["llama-stack", "run", "starter", "--workers", "4"]),
            Ok(Command::Run {
                workers: Some(4),
                ..
            })
        ));
    }
}
