//! Offload placeholder (filled in by the next commit).

/// `scenario offload` options.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Not yet written.
///
/// # Errors
/// Always.
pub fn run(_args: &Args) -> std::io::Result<()> {
    Err(std::io::Error::other("scenario offload: not written yet"))
}
