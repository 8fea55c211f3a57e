//! The command-line flags every server binary wants (feature `cli`):
//! flatten [`ServerArgs`] into your own `clap` parser.

use std::net::SocketAddr;

use crate::{Backend, Config, ConfigBuilder, Endpoint, Result, Server};

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
///     let server = args.server.bind("127.0.0.1:7000", args.server.config()?)?;
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
    /// Where to listen: HOST:PORT, or unix:PATH for a Unix socket. Repeat
    /// for several listeners (the first is listener 0).
    #[arg(long, value_name = "HOST:PORT|unix:PATH")]
    pub addr: Vec<Endpoint>,
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

    /// The endpoints to listen on: every `--addr`, or `default` (`HOST:PORT`
    /// or `unix:PATH`) when there is none.
    ///
    /// # Errors
    /// [`Error::Resolve`](crate::Error::Resolve) if `default` is needed and
    /// does not resolve.
    pub fn endpoints_or(&self, default: &str) -> Result<Vec<Endpoint>> {
        if self.addr.is_empty() {
            Ok(vec![default.parse()?])
        } else {
            Ok(self.addr.clone())
        }
    }

    /// Binds a server with `config` to [`ServerArgs::endpoints_or`]`(default)`:
    /// the first with [`Server::bind_to`], the others with
    /// [`Server::also_listen`].
    ///
    /// # Errors
    /// As [`ServerArgs::endpoints_or`] and [`Server::bind_to`].
    pub fn bind(&self, default: &str, config: Config) -> Result<Server> {
        let endpoints = self.endpoints_or(default)?;
        let mut server = Server::bind_to(&endpoints[0], config)?;
        for endpoint in &endpoints[1..] {
            server = server.also_listen(endpoint)?;
        }
        Ok(server)
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
        let tcp = |s: &str| Endpoint::Tcp(s.parse().unwrap());
        assert_eq!(args.server.endpoints_or("127.0.0.1:1").unwrap(), [tcp("127.0.0.1:9")]);
        let none = ServerArgs::default();
        assert_eq!(none.endpoints_or("127.0.0.1:1").unwrap(), [tcp("127.0.0.1:1")]);
        let both = Args::try_parse_from(["srv", "--addr", "127.0.0.1:9", "--addr", "unix:/x"]);
        let both = both.unwrap().server.endpoints_or("127.0.0.1:1").unwrap();
        assert_eq!(both, [tcp("127.0.0.1:9"), Endpoint::Unix("/x".into())]);
        let err = Args::try_parse_from(["srv", "--backend", "kqueue"]).unwrap_err().to_string();
        assert!(err.contains("expected epoll, uring or auto"), "{err}");
    }
}
