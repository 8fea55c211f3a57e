//! The command-line flags every server binary wants (feature `cli`):
//! flatten [`ServerArgs`] into your own `clap` parser.

use std::net::SocketAddr;

use crate::{Backend, Config, ConfigBuilder, Result};

/// `--backend`, `--workers`, `--pin`, `--addr` and `--metrics`, on top of the
/// `POLLRING_*` environment variables ([`Config::from_env`]): flags win.
///
/// # Examples
/// ```no_run
/// use clap::Parser;
///
/// /// My server.
/// #[derive(Parser)]
/// struct Args {
///     #[command(flatten)]
///     server: pollring::cli::ServerArgs,
///     /// A flag of my own.
///     #[arg(long)]
///     greeting: Option<String>,
/// }
///
/// # struct Echo;
/// # impl pollring::Handler for Echo {
/// #     type Conn = ();
/// #     type Message = ();
/// #     fn on_open(&mut self, _: &mut pollring::Cx<'_>) {}
/// #     fn on_data(&mut self, _: &mut (), cx: &mut pollring::Cx<'_>) { let n = cx.input().len(); cx.forward(n); }
/// # }
/// fn main() -> Result<(), pollring::Error> {
///     pollring::log::init();
///     let args = Args::parse();
///     let server = pollring::Server::bind(args.server.addr_or("127.0.0.1:7000"), args.server.config()?)?;
///     server.run(|_worker| Echo)
/// }
/// ```
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// I/O backend: epoll, uring or auto.
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<Backend>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Pin each worker to its own CPU.
    #[arg(long)]
    pub pin: bool,
    /// Address to listen on.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Serve `GET /metrics` (Prometheus text format) at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<SocketAddr>,
}

fn parse_backend(s: &str) -> std::result::Result<Backend, String> {
    s.parse().map_err(|e: crate::ParseBackendError| e.to_string())
}

impl ServerArgs {
    /// The config: defaults, then `POLLRING_*` variables, then these flags.
    ///
    /// # Errors
    /// A variable or flag that does not parse or validate.
    pub fn config(&self) -> Result<Config> {
        let mut b = ConfigBuilder::from_env()?;
        if let Some(backend) = self.backend {
            b = b.backend(backend);
        }
        if let Some(workers) = self.workers {
            b = b.workers(workers);
        }
        if self.pin {
            b = b.pin_cpus(true);
        }
        if let Some(at) = self.metrics {
            b = b.metrics_addr(Some(at));
        }
        b.build()
    }

    /// The address to listen on: `--addr`, or `default`.
    ///
    /// # Panics
    /// If `default` is not a socket address (it is the program's own).
    pub fn addr_or(&self, default: &str) -> SocketAddr {
        self.addr.unwrap_or_else(|| default.parse().expect("a valid default address"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        mine: bool,
    }

    #[test]
    fn flags_flatten_into_a_programs_own_parser() {
        let args = Args::try_parse_from([
            "srv",
            "--backend",
            "epoll",
            "--workers",
            "3",
            "--addr",
            "127.0.0.1:9",
            "--metrics",
            "127.0.0.1:10",
            "--mine",
        ])
        .unwrap();
        assert!(args.mine);
        let config = args.server.config().unwrap();
        assert_eq!(config.backend, Backend::Epoll);
        assert_eq!(config.workers.get(), 3);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:10".parse().unwrap()));
        assert_eq!(args.server.addr_or("127.0.0.1:1"), "127.0.0.1:9".parse().unwrap());
        assert_eq!(ServerArgs::default().addr_or("127.0.0.1:1"), "127.0.0.1:1".parse().unwrap());
        let err = Args::try_parse_from(["srv", "--backend", "kqueue"]).unwrap_err().to_string();
        assert!(err.contains("expected epoll, uring or auto"), "{err}");
    }
}
