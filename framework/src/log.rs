//! One-call logging set-up for a server's `main` (feature `log`, on by
//! default).

/// Installs a [`tracing`] subscriber that writes to stderr, filtered by
/// `RUST_LOG` (`info` when it is unset or does not parse): the framework's
/// warnings (an `Auto` backend falling back to epoll, a worker backing off
/// accept errors) and errors (a handler that panicked) then show. Colours
/// only when stderr is a terminal (not in a file, a pipe or the journal).
/// Returns
/// `false`, changing nothing, if a global subscriber was installed already.
///
/// # Examples
/// ```no_run
/// fn main() -> Result<(), pollring::Error> {
///     pollring::log::init(); // RUST_LOG=debug for more
///     let server = pollring::Server::bind("127.0.0.1:7000", pollring::Config::from_env()?)?;
///     # struct Echo;
///     # impl pollring::Handler for Echo {
///     #     type Conn = ();
///     #     type Message = ();
///     #     fn on_open(&mut self, _: &mut pollring::Cx<'_>) {}
///     #     fn on_data(&mut self, _: &mut (), cx: &mut pollring::Cx<'_>) { let n = cx.input().len(); cx.forward(n); }
///     # }
///     server.run(|_worker| Echo)
/// }
/// ```
pub fn init() -> bool {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .is_ok()
}
