//! An L4 TCP proxy on tokio: what a tokio user writes. One task per accepted
//! connection connects to the upstream and runs
//! [`tokio::io::copy_bidirectional`] between the two sockets (its default
//! 8 KiB buffer per direction), until both directions have seen end of
//! stream.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::PROXY_CONNECT_TIMEOUT;

/// Proxies `inbound` to a new connection to `upstream` until both sides
/// have closed.
///
/// End of stream from one side is passed on as a write shutdown to the
/// other (`copy_bidirectional` does that), so half-closes go through.
///
/// # Errors
///
/// The upstream connect failing or timing out, or either connection's read
/// or write error (e.g. a reset). Dropping the two sockets closes them.
pub(super) async fn serve_conn(mut inbound: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let mut outbound = tokio::time::timeout(PROXY_CONNECT_TIMEOUT, TcpStream::connect(upstream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream connect timed out"))??;
    outbound.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::thread;

    use super::super::test_util::Running;
    use super::super::Proto;

    #[test]
    fn proxies_100_kb_to_an_echo_upstream_byte_exact() {
        let upstream = Running::start(Proto::Echo);
        let proxy = Running::start(Proto::Proxy { upstream: upstream.addr });
        let mut client = proxy.connect();
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();

        let mut writer = client.try_clone().expect("clone client");
        let data = sent.clone();
        let writing = thread::spawn(move || writer.write_all(&data));
        let mut received = vec![0u8; sent.len()];
        client.read_exact(&mut received).expect("read echo through the proxy");
        writing.join().expect("writer panicked").expect("write");
        assert!(received == sent, "bytes through the proxy differ from the sent ones");

        // A half-close travels to the upstream, whose close comes back.
        client.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("read to end");
        assert!(rest.is_empty(), "{} bytes after the echo", rest.len());

        proxy.stop();
        upstream.stop();
    }

    #[test]
    fn closes_the_client_when_the_upstream_refuses() {
        // Bind and drop: nothing listens on the port any more.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind loopback");
        let proxy = Running::start(Proto::Proxy { upstream: refused });
        let mut client = proxy.connect();
        let mut rest = Vec::new();
        match client.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{} bytes from nowhere", rest.len()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        proxy.stop();
    }
}
