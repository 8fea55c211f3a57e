//! Echo on tokio: the read / `write_all` loop of tokio's own echo example.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read per call: pollring's default pool buffer size, so one read
/// takes at most what one pollring receive does.
const BUF_SIZE: usize = 16 * 1024;

/// Echoes `stream` until the peer closes its side or an error occurs.
///
/// # Errors
///
/// The connection's read or write error (e.g. a reset by the peer).
pub(super) async fn serve_conn(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::thread;

    use super::super::test_util::Running;
    use super::super::Proto;

    #[test]
    fn echoes_100_kb_byte_exact() {
        let server = Running::start(Proto::Echo);
        let mut client = server.connect();
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();

        // Write from another thread: echoed bytes flow back while we send.
        let mut writer = client.try_clone().expect("clone client");
        let data = sent.clone();
        let writing = thread::spawn(move || writer.write_all(&data));
        let mut received = vec![0u8; sent.len()];
        client.read_exact(&mut received).expect("read echo");
        writing.join().expect("writer panicked").expect("write");
        assert!(received == sent, "echoed bytes differ from the sent ones");

        // Half-closing ends the echo: the server closes too.
        client.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("read to end");
        assert!(rest.is_empty(), "{} bytes after the echo", rest.len());

        server.stop();
    }

    #[test]
    fn stops_with_connections_open() {
        let server = Running::start(Proto::Echo);
        let mut idle = server.connect();
        idle.write_all(b"ping").expect("write");
        let mut pong = [0u8; 4];
        idle.read_exact(&mut pong).expect("read");
        assert_eq!(&pong, b"ping");

        server.stop();

        // The connection's task was dropped with the runtime: its socket is closed.
        let mut rest = Vec::new();
        match idle.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{} bytes after stop", rest.len()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }

    #[test]
    fn stops_when_the_sender_is_dropped() {
        let server = Running::start(Proto::Echo);
        drop(server.connect());
        server.drop_sender();
    }
}
