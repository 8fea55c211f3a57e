//! Writing RESP2 replies: straight into a connection's output
//! ([`pollring::Writer`]), or into a `Vec` (tests, tools).

/// Where replies are written. Each reply is handed over in one call, so
/// that a writer can serialise it in one pass into the room left in its
/// current pool buffer.
pub trait Sink {
    /// Appends `parts`, in order, as one piece of output.
    fn put(&mut self, parts: &[&[u8]]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.extend_from_slice(part);
        }
    }
}

impl Sink for pollring::Writer<'_> {
    fn put(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let fitted = self.put_with(|room| {
            let Some(room) = room.get_mut(..len) else { return 0 };
            let mut at = 0;
            for part in parts {
                room[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            len
        });
        if fitted == 0 && len > 0 {
            for part in parts {
                pollring::Writer::put(self, part);
            }
        }
    }
}

/// `+<s>\r\n`, a status reply.
pub fn simple(out: &mut dyn Sink, s: &str) {
    out.put(&[b"+", s.as_bytes(), b"\r\n"]);
}

/// `+OK\r\n`.
pub fn ok(out: &mut dyn Sink) {
    out.put(&[b"+OK\r\n"]);
}

/// `-<msg>\r\n`, an error reply. `msg` starts with the error code (`ERR`,
/// `NOPROTO`); a `\r` or `\n` in it would end the reply early, so each is
/// written as a space (as Redis does).
pub fn error(out: &mut dyn Sink, msg: &[u8]) {
    let line_end = |b: &u8| *b == b'\r' || *b == b'\n';
    let msg: std::borrow::Cow<'_, [u8]> = if msg.iter().any(line_end) {
        msg.iter().map(|b| if line_end(b) { b' ' } else { *b }).collect()
    } else {
        msg.into()
    };
    out.put(&[b"-", &msg, b"\r\n"]);
}

/// `:<n>\r\n`, an integer reply.
pub fn integer(out: &mut dyn Sink, n: i64) {
    out.put(&[b":", itoa::Buffer::new().format(n).as_bytes(), b"\r\n"]);
}

/// `$<len>\r\n<bytes>\r\n`, a bulk string.
pub fn bulk(out: &mut dyn Sink, bytes: &[u8]) {
    out.put(&[b"$", itoa::Buffer::new().format(bytes.len()).as_bytes(), b"\r\n", bytes, b"\r\n"]);
}

/// `$-1\r\n`, the null bulk string (a missing key).
pub fn null(out: &mut dyn Sink) {
    out.put(&[b"$-1\r\n"]);
}

/// A bulk string, or the null bulk string for `None`.
pub fn bulk_or_null(out: &mut dyn Sink, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => bulk(out, b),
        None => null(out),
    }
}

/// `*<n>\r\n`, the header of an array of `n` replies that follow.
pub fn array(out: &mut dyn Sink, n: usize) {
    out.put(&[b"*", itoa::Buffer::new().format(n).as_bytes(), b"\r\n"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let mut out = Vec::new();
        simple(&mut out, "PONG");
        error(&mut out, b"ERR bad\r\nthing");
        integer(&mut out, -3);
        bulk(&mut out, b"a\r\nb");
        null(&mut out);
        array(&mut out, 2);
        assert_eq!(out, b"+PONG\r\n-ERR bad  thing\r\n:-3\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n");
    }
}
