//! Micro-benches of the HTTP/1.1 and RESP request parsers.
//!
//! * `http`: a TechEmpower plaintext request head (the one `wrk` sends,
//!   ~400 B): `Parser::parse_head` on the head alone; `RequestReader::advance`
//!   (head scan + parse) on one request and over a `&[u8]` stream of 16
//!   pipelined ones; and one `advance` over a [`Chain`] of pool buffers with
//!   the head in one buffer vs split across two (scanned across the
//!   boundary, then copied once into scratch).
//! * `resp`: `Parser::scan` + `Parser::args` on `SET key value` as a
//!   multibulk command, alone and as a pipeline of 16, on an inline `PING`,
//!   and on the `SET` cut across two pool buffers (scan over the chain's
//!   chunks, then `Chain::contiguous` copies it for `args`).
//!
//! Throughput is in requests (`elem/s`). Inputs are built before timing.
//!
//! Run with `cargo bench -p pollring-bench --bench parsers` (add
//! `-- --warm-up-time 0.2 --measurement-time 0.5` for a quick pass, or a
//! group name such as `-- resp` to filter).

use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::Range;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pollring_backends::buf::{Chain, Pool};
use pollring_examples::http::parser::{Parser, Progress, RequestReader, Source};
use pollring_examples::resp;

/// The request head `wrk` sends in TechEmpower's plaintext test.
const HEAD: &[u8] = b"GET /plaintext HTTP/1.1\r\n\
Host: server\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20130501 Firefox/30.0 AppleWebKit/600.00 Chrome/30.0.0000.0 Trident/10.0 Safari/600.00\r\n\
Cookie: uid=12345678901234567890; __utma=1.1234567890.1234567890.1234567890.1234567890.12; wd=2560x1600\r\n\
Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Connection: keep-alive\r\n\
\r\n";

const SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
const PING: &[u8] = b"PING\r\n";
/// Requests in a pipelined burst.
const PIPELINE: usize = 16;
const BUF: usize = 16 * 1024;

fn pool() -> Box<Pool> {
    Pool::new(NonZeroUsize::new(BUF).unwrap(), NonZeroU32::new(16).unwrap())
        .expect("map the bench pool")
}

/// A chain holding `bytes`, starting `offset` bytes into its first buffer
/// (so `bytes` crosses a buffer boundary when `offset + len > BUF`).
fn chain_at(pool: &mut Pool, offset: usize, bytes: &[u8]) -> Chain {
    let mut chain = Chain::new();
    chain.extend_from_slice(pool, &vec![b'-'; offset]).expect("pool sized for the bench");
    chain.extend_from_slice(pool, bytes).expect("pool sized for the bench");
    chain.consume(pool, offset);
    chain
}

/// A connection's input as the framework holds it: a chain of pool buffers.
#[derive(Debug)]
struct ChainStream<'p> {
    pool: &'p mut Pool,
    chain: Chain,
    scratch: Vec<u8>,
}

impl Source for ChainStream<'_> {
    fn len(&mut self) -> usize {
        self.chain.len()
    }

    fn first(&mut self) -> &[u8] {
        self.chain.first(self.pool)
    }

    fn find(&mut self, from: usize, byte: u8) -> Option<usize> {
        self.chain.find(self.pool, from, byte)
    }

    fn range(&mut self, range: Range<usize>) -> Option<&[u8]> {
        (range.start <= range.end && range.end <= self.chain.len())
            .then(|| self.chain.contiguous(self.pool, range, &mut self.scratch))
    }

    fn consume(&mut self, n: usize) {
        self.chain.consume(self.pool, n);
    }
}

/// Heads read by `advance` until the stream runs dry.
fn read_all<S: Source + ?Sized>(parser: &mut Parser, s: &mut S) -> usize {
    let mut reader = RequestReader::default();
    let mut heads = 0;
    loop {
        match reader.advance(parser, s, |_| {}).expect("valid requests") {
            Progress::Head(req) => {
                black_box(&req);
                heads += 1;
            }
            Progress::BodyDone => {}
            Progress::NeedMore => return heads,
        }
    }
}

fn http(c: &mut Criterion) {
    let mut parser = Parser::default();
    let pipeline = HEAD.repeat(PIPELINE);
    assert_eq!(read_all(&mut parser, &mut &pipeline[..]), PIPELINE);

    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_head", |b| {
        b.iter(|| {
            let req = parser.parse_head(black_box(HEAD)).expect("valid head");
            black_box((req.method, req.path(), req.keep_alive));
        })
    });
    g.bench_function("advance/1", |b| b.iter(|| read_all(&mut parser, &mut black_box(HEAD))));
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("advance/pipeline_16", |b| {
        b.iter(|| read_all(&mut parser, &mut black_box(&pipeline[..])))
    });

    // One `advance` to the head over a chain; nothing is consumed, so the
    // same chain serves every iteration.
    let mut pool = pool();
    g.throughput(Throughput::Elements(1));
    for (name, offset) in [("chain/one_buffer", 0), ("chain/split", BUF - HEAD.len() / 2)] {
        let chain = chain_at(&mut pool, offset, HEAD);
        let mut s = ChainStream { pool: &mut pool, chain, scratch: Vec::with_capacity(4096) };
        let split = s.chain.buffers(s.pool) > 1;
        assert_eq!(split, offset > 0, "head placed as intended");
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut reader = RequestReader::default();
                match reader.advance(&mut parser, &mut s, |_| {}).expect("valid head") {
                    Progress::Head(req) => black_box(&req).keep_alive,
                    other => panic!("expected a head, got {other:?}"),
                }
            })
        });
        s.chain.clear(s.pool);
    }
    g.finish();
    assert_eq!(pool.in_use(), 0);
}

/// Scans and reads the arguments of every request in `input`; returns the
/// number of requests.
fn resp_all(parser: &mut resp::Parser, mut input: &[u8]) -> usize {
    let mut n = 0;
    while let Some(len) = parser.scan([input]).expect("valid requests") {
        let args = parser.args(&input[..len]);
        black_box(args.get(0));
        black_box(args.get(args.len() - 1));
        input = &input[len..];
        n += 1;
    }
    n
}

fn resp(c: &mut Criterion) {
    let mut parser = resp::Parser::new(resp::Limits::default());
    let pipeline = SET.repeat(PIPELINE);
    assert_eq!(resp_all(&mut parser, &pipeline), PIPELINE);
    assert_eq!(resp_all(&mut parser, PING), 1);

    let mut g = c.benchmark_group("resp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("set/1", |b| b.iter(|| resp_all(&mut parser, black_box(SET))));
    g.bench_function("ping_inline", |b| b.iter(|| resp_all(&mut parser, black_box(PING))));
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("set/pipeline_16", |b| b.iter(|| resp_all(&mut parser, black_box(&pipeline))));

    // The command cut after its key, across two pool buffers: scan the
    // chain's chunks, then copy the request out once for the arguments.
    let mut pool = pool();
    let mut chain = chain_at(&mut pool, BUF - 22, SET);
    assert_eq!(chain.buffers(&pool), 2);
    let mut scratch = Vec::with_capacity(64);
    g.throughput(Throughput::Elements(1));
    g.bench_function("set/split_chain", |b| {
        b.iter(|| {
            let len = parser.scan(chain.chunks(&pool)).expect("valid").expect("complete");
            let request = chain.contiguous(&pool, 0..len, &mut scratch);
            let args = parser.args(request);
            black_box((args.get(0), args.get(2)));
        })
    });
    g.finish();
    chain.clear(&mut pool);
    assert_eq!(pool.in_use(), 0);
}

criterion_group!(benches, http, resp);
criterion_main!(benches);
