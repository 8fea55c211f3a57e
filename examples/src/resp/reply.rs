//! Writing RESP2 replies into a byte buffer.

use std::io::Write as _;

/// `+<s>\r\n`, a status reply.
pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `+OK\r\n`.
pub fn ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

/// `-<msg>\r\n`, an error reply. `msg` starts with the error code (`ERR`,
/// `NOPROTO`); a `\r` or `\n` in it would end the reply early, so each is
/// written as a space (as Redis does).
pub fn error(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(b'-');
    out.extend(msg.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

/// `:<n>\r\n`, an integer reply.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, ":{n}\r\n");
}

/// `$<len>\r\n<bytes>\r\n`, a bulk string.
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = write!(out, "${}\r\n", bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `$-1\r\n`, the null bulk string (a missing key).
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// A bulk string, or the null bulk string for `None`.
pub fn bulk_or_null(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => bulk(out, b),
        None => null(out),
    }
}

/// `*<n>\r\n`, the header of an array of `n` replies that follow.
pub fn array(out: &mut Vec<u8>, n: usize) {
    let _ = write!(out, "*{n}\r\n");
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
