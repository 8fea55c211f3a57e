//! Micro-benches of the buffer [`Chain`] and its [`Pool`].
//!
//! Every group runs against a pool of 16 KiB x 1024 buffers (as large as a
//! worker's), so nothing runs out, and annotates throughput in bytes:
//!
//! * `append`: `extend_from_slice` of 64 KiB in 64 B, 1 KiB or 16 KiB
//!   pieces into an empty chain, then `clear` (both timed).
//! * `push_or_copy`: 16 received 64 B buffers behind a 100 B partial frame,
//!   either copied into the tail (`copy`, the worker's limit of a quarter
//!   buffer) or linked as buffers of their own (`link`, limit 0).
//! * `consume`: draining a 64 KiB, four-buffer chain in 100 B or 1500 B
//!   steps, freeing buffers as they empty.
//! * `contiguous`: a 64 B or 4 KiB view inside one buffer (borrowed) vs one
//!   spanning a buffer boundary (copied into a warm scratch `Vec`).
//! * `find`: a `\n` 100 B after `from` straddling a boundary (what the HTTP
//!   head scanner does), and one at the end of four buffers (64 KiB).
//! * `split_to_append`: forwarding a 64 KiB chain into another in frames of
//!   16 KiB (buffer-aligned, no copy), 64 KiB (the whole chain) or 10 KiB
//!   (every frame cuts a buffer, whose front part is copied).
//!
//! Chains that the timed code consumes are built outside the timing, a batch
//! at a time, and what it produced is cleared outside the timing too.
//!
//! Run with `cargo bench -p pollring-bench --bench chain` (add
//! `-- --warm-up-time 0.2 --measurement-time 0.5` for a quick pass, or a
//! group name such as `-- find` to filter).

use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Bencher, BenchmarkId, Criterion, Throughput};
use pollring_backends::buf::{Buf, Chain, Pool};

/// Buffer size of the pool: a worker's receive buffer.
const BUF: usize = 16 * 1024;
/// Buffers in the pool; a batch of inputs uses a few hundred at most.
const COUNT: u32 = 1024;
/// Inputs built per timed batch in [`batched`].
const BATCH: usize = 32;
/// The stream size most groups move.
const TOTAL: usize = 64 * 1024;

fn pool() -> Box<Pool> {
    Pool::new(NonZeroUsize::new(BUF).unwrap(), NonZeroU32::new(COUNT).unwrap())
        .expect("map the bench pool")
}

/// `len` bytes of varied, non-newline data.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn chain_of(pool: &mut Pool, bytes: &[u8]) -> Chain {
    let mut chain = Chain::new();
    chain.extend_from_slice(pool, bytes).expect("pool sized for the bench");
    chain
}

/// Times `routine` alone over inputs made by `setup`, [`BATCH`] at a time
/// (so the pool never runs dry); `teardown` gets each output back, untimed.
fn batched<I, O>(
    b: &mut Bencher<'_>,
    pool: &mut Pool,
    mut setup: impl FnMut(&mut Pool) -> I,
    mut routine: impl FnMut(&mut Pool, I) -> O,
    mut teardown: impl FnMut(&mut Pool, O),
) {
    b.iter_custom(|iters| {
        let mut inputs = Vec::with_capacity(BATCH);
        let mut outputs = Vec::with_capacity(BATCH);
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(BATCH as u64);
            inputs.extend((0..n).map(|_| setup(pool)));
            let start = Instant::now();
            for input in inputs.drain(..) {
                outputs.push(black_box(routine(pool, black_box(input))));
            }
            total += start.elapsed();
            for output in outputs.drain(..) {
                teardown(pool, output);
            }
            left -= n;
        }
        total
    });
}

fn append(c: &mut Criterion) {
    let mut pool = pool();
    let src = data(TOTAL);
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    for piece in [64, 1024, 16 * 1024] {
        g.bench_with_input(BenchmarkId::new("extend_from_slice", piece), &piece, |b, &piece| {
            b.iter(|| {
                let mut chain = Chain::new();
                for part in black_box(&src[..]).chunks(piece) {
                    chain.extend_from_slice(&mut pool, part).expect("pool sized for the bench");
                }
                black_box(chain.len());
                chain.clear(&mut pool);
            })
        });
    }
    g.finish();
    assert_eq!(pool.in_use(), 0);
}

fn push_or_copy(c: &mut Criterion) {
    const RECEIVES: usize = 16;
    const RX: usize = 64;
    let mut pool = pool();
    let partial = data(100);
    let rx = data(RX);
    let mut g = c.benchmark_group("push_or_copy");
    g.throughput(Throughput::Bytes((RECEIVES * RX) as u64));
    for (name, limit) in [("copy", BUF / 4), ("link", 0)] {
        g.bench_function(BenchmarkId::new(name, format!("{RECEIVES}x{RX}B")), |b| {
            batched(
                b,
                &mut pool,
                |pool| {
                    // A frame's first 100 bytes, then what the kernel received.
                    let chain = chain_of(pool, &partial);
                    let bufs: Vec<Buf> = (0..RECEIVES)
                        .map(|_| {
                            let buf = pool.alloc().expect("pool sized for the bench");
                            pool.spare_mut(&buf)[..RX].copy_from_slice(&rx);
                            pool.fill(&buf, RX);
                            buf
                        })
                        .collect();
                    (chain, bufs)
                },
                |pool, (mut chain, mut bufs)| {
                    for buf in bufs.drain(..) {
                        chain.push_or_copy(pool, buf, limit);
                    }
                    (chain, bufs)
                },
                |pool, (mut chain, _bufs)| chain.clear(pool),
            )
        });
    }
    g.finish();
    assert_eq!(pool.in_use(), 0);
}

fn consume(c: &mut Criterion) {
    let mut pool = pool();
    let src = data(TOTAL);
    let mut g = c.benchmark_group("consume");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    for step in [100, 1500] {
        g.bench_with_input(BenchmarkId::new("drain_4_buffers", step), &step, |b, &step| {
            batched(
                b,
                &mut pool,
                |pool| chain_of(pool, &src),
                |pool, mut chain| {
                    while !chain.is_empty() {
                        let n = step.min(chain.len());
                        chain.consume(pool, n);
                    }
                    chain
                },
                |pool, mut chain| chain.clear(pool),
            )
        });
    }
    g.finish();
    assert_eq!(pool.in_use(), 0);
}

fn contiguous(c: &mut Criterion) {
    let mut pool = pool();
    let chain = chain_of(&mut pool, &data(2 * BUF));
    assert_eq!(chain.buffers(&pool), 2);
    let mut scratch = Vec::with_capacity(BUF);
    let mut g = c.benchmark_group("contiguous");
    for len in [64, 4096] {
        g.throughput(Throughput::Bytes(len as u64));
        let inside = 1000..1000 + len;
        let spanning = BUF - len / 2..BUF + len / 2;
        g.bench_with_input(BenchmarkId::new("inside_borrowed", len), &inside, |b, range| {
            b.iter(|| {
                let view = chain.contiguous(&pool, black_box(range.clone()), &mut scratch);
                black_box(view);
            })
        });
        g.bench_with_input(BenchmarkId::new("spanning_copied", len), &spanning, |b, range| {
            b.iter(|| {
                let view = chain.contiguous(&pool, black_box(range.clone()), &mut scratch);
                black_box(view);
            })
        });
    }
    g.finish();
    let mut chain = chain;
    chain.clear(&mut pool);
    assert_eq!(pool.in_use(), 0);
}

fn find(c: &mut Criterion) {
    let mut pool = pool();
    let mut g = c.benchmark_group("find");

    // A line end 50 bytes into the second buffer, searched from 50 bytes
    // before the first one's end.
    let mut near = data(2 * BUF);
    near[BUF + 49] = b'\n';
    let near = chain_of(&mut pool, &near);
    g.throughput(Throughput::Bytes(100));
    g.bench_function("straddling_100B", |b| {
        b.iter(|| near.find(&pool, black_box(BUF - 50), black_box(b'\n')))
    });

    // The only line end is the last byte of four buffers.
    let mut far = data(TOTAL);
    far[TOTAL - 1] = b'\n';
    let far = chain_of(&mut pool, &far);
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.bench_function("last_of_4_buffers", |b| {
        b.iter(|| far.find(&pool, black_box(0), black_box(b'\n')))
    });
    g.finish();

    for mut chain in [near, far] {
        chain.clear(&mut pool);
    }
    assert_eq!(pool.in_use(), 0);
}

fn split_to_append(c: &mut Criterion) {
    let mut pool = pool();
    let src = data(TOTAL);
    let mut g = c.benchmark_group("split_to_append");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    for (name, frame) in [("aligned", BUF), ("whole", TOTAL), ("cut", 10 * 1024)] {
        g.bench_with_input(BenchmarkId::new(name, frame), &frame, |b, &frame| {
            batched(
                b,
                &mut pool,
                |pool| chain_of(pool, &src),
                |pool, mut input| {
                    let mut out = Chain::new();
                    while !input.is_empty() {
                        let n = frame.min(input.len());
                        let part = input.split_to(pool, n).expect("pool sized for the bench");
                        out.append(pool, part);
                    }
                    (input, out)
                },
                |pool, (mut input, mut out)| {
                    input.clear(pool);
                    out.clear(pool);
                },
            )
        });
    }
    g.finish();
    assert_eq!(pool.in_use(), 0);
}

criterion_group!(benches, append, push_or_copy, consume, contiguous, find, split_to_append);
criterion_main!(benches);
