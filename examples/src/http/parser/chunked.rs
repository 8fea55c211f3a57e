//! Chunked request bodies: [`ChunkedDecoder`].

use super::{Error, Limits};

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size.
    Size { size: u64, digits: u32 },
    /// After the size: whitespace or `;` extensions up to CR.
    Ext { size: u64 },
    /// Expecting the LF of the size line.
    SizeLf { size: u64 },
    /// Chunk data bytes left.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Expecting the LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// Decodes a `Transfer-Encoding: chunked` body incrementally, from any
/// split of its bytes. Chunk extensions and trailer fields are skipped;
/// line ends must be CRLF.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: Chunk,
    /// Data bytes decoded so far.
    total: u64,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
    max_body: u64,
    max_trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `limits.max_body` bytes with trailers
    /// of at most `limits.max_head` bytes.
    pub fn new(limits: &Limits) -> ChunkedDecoder {
        ChunkedDecoder {
            state: Chunk::Size { size: 0, digits: 0 },
            total: 0,
            line: 0,
            max_body: limits.max_body,
            max_trailers: limits.max_head,
        }
    }

    /// Whether the final chunk and trailers have been decoded.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Decodes from `input`, handing each run of body data to `sink`.
    /// Returns how many bytes of `input` belong to the body: all of them,
    /// unless the body ends inside `input` (then [`ChunkedDecoder::is_done`]).
    ///
    /// # Errors
    /// [`Error::Malformed`] for bad framing, [`Error::BodyTooLarge`] past
    /// `max_body`, [`Error::HeadTooLarge`] for trailers past `max_head`.
    pub fn decode(&mut self, input: &[u8], mut sink: impl FnMut(&[u8])) -> Result<usize, Error> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                Chunk::Done => return Ok(i),
                Chunk::Data(left) => {
                    let n = left.min((input.len() - i) as u64) as usize;
                    sink(&input[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { Chunk::DataCr } else { Chunk::Data(left) };
                }
                _ => {
                    self.state = self.framing(input[i])?;
                    i += 1;
                }
            }
        }
        Ok(i)
    }

    /// The state after framing byte `b` (anything but chunk data).
    fn framing(&mut self, b: u8) -> Result<Chunk, Error> {
        match self.state {
            Chunk::Size { size, digits } => self.size(size, digits, b),
            Chunk::Ext { size } => {
                self.size_line_byte()?;
                match b {
                    b'\r' => Ok(Chunk::SizeLf { size }),
                    b'\t' | b' '..=b'~' | 0x80.. => Ok(Chunk::Ext { size }),
                    _ => Err(Error::Malformed("invalid chunk extension")),
                }
            }
            Chunk::SizeLf { size } if b == b'\n' => self.chunk(size),
            Chunk::SizeLf { .. } => Err(Error::Malformed("chunk size line not ended by CRLF")),
            Chunk::DataCr if b == b'\r' => Ok(Chunk::DataLf),
            Chunk::DataLf if b == b'\n' => Ok(Chunk::Size { size: 0, digits: 0 }),
            Chunk::DataCr | Chunk::DataLf => {
                Err(Error::Malformed("chunk data not followed by CRLF"))
            }
            Chunk::TrailerStart | Chunk::Trailer | Chunk::TrailerLf | Chunk::EndLf => {
                self.trailer(b)
            }
            Chunk::Data(_) | Chunk::Done => unreachable!("decode handles data and the end"),
        }
    }

    /// Counts a byte of the size line against [`MAX_CHUNK_LINE`].
    fn size_line_byte(&mut self) -> Result<(), Error> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(Error::Malformed("chunk size line too long"));
        }
        Ok(())
    }

    /// A byte of the chunk size: a hex digit, or what ends the digits.
    fn size(&mut self, size: u64, digits: u32, b: u8) -> Result<Chunk, Error> {
        self.size_line_byte()?;
        match (b as char).to_digit(16) {
            Some(_) if size >> 60 != 0 => Err(Error::BodyTooLarge),
            Some(d) => Ok(Chunk::Size { size: size << 4 | u64::from(d), digits: digits + 1 }),
            None if digits == 0 => Err(Error::Malformed("missing chunk size")),
            None => match b {
                b'\r' => Ok(Chunk::SizeLf { size }),
                b';' | b' ' | b'\t' => Ok(Chunk::Ext { size }),
                _ => Err(Error::Malformed("invalid chunk size")),
            },
        }
    }

    /// The size line has ended: `size` bytes of data follow, or the
    /// trailers if it is the last chunk.
    fn chunk(&mut self, size: u64) -> Result<Chunk, Error> {
        self.line = 0;
        if size == 0 {
            return Ok(Chunk::TrailerStart);
        }
        self.total = self
            .total
            .checked_add(size)
            .filter(|&t| t <= self.max_body)
            .ok_or(Error::BodyTooLarge)?;
        Ok(Chunk::Data(size))
    }

    /// A byte of the trailer section (skipped, but bounded and checked).
    fn trailer(&mut self, b: u8) -> Result<Chunk, Error> {
        self.line += 1;
        if self.line > self.max_trailers {
            return Err(Error::HeadTooLarge);
        }
        match (self.state, b) {
            (Chunk::TrailerStart, b'\r') => Ok(Chunk::EndLf),
            (Chunk::TrailerStart, b' ' | b'\t') => {
                Err(Error::Malformed("obsolete line folding in trailer"))
            }
            (Chunk::Trailer, b'\r') => Ok(Chunk::TrailerLf),
            (Chunk::TrailerStart | Chunk::Trailer, b'\t' | b' '..=b'~' | 0x80..) => {
                Ok(Chunk::Trailer)
            }
            (Chunk::TrailerLf, b'\n') => Ok(Chunk::TrailerStart),
            (Chunk::EndLf, b'\n') => Ok(Chunk::Done),
            _ => Err(Error::Malformed("invalid trailer section")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{err, one, read_all};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let r = one(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n1 ; x\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\nY: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"hello 0123456789");
        let r = one(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n")
            .unwrap();
        assert!(r.body.is_empty());
    }

    #[test]
    fn malformed_chunked_bodies() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\r",
            b"1;\x01\r\n",
            b"0\r\n folded\r\n\r\n",
        ] {
            let input = [&head[..], body].concat();
            assert_eq!(err(&input).status(), 400, "{:?}", String::from_utf8_lossy(body));
        }
    }

    proptest! {
        /// Random bytes after a valid chunked head never panic the decoder.
        #[test]
        fn random_chunked_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
            let input = [&head[..], &data].concat();
            let pieces: Vec<&[u8]> = input.chunks(3).collect();
            let _ = read_all(&pieces, 5, Limits::default());
        }
    }
}
