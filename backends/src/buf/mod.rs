//! Per-worker buffers: a [`Pool`] of fixed-size buffers and the [`Chain`]
//! that links them into a byte stream.
//!
//! # Ownership rules
//!
//! * A pool buffer is named by a [`Buf`] handle, which is neither `Copy` nor
//!   `Clone`: whoever holds the handle owns the bytes. Handing a `Buf` to the
//!   driver (or, through the driver, to the kernel) moves it; it comes back
//!   with the completion event.
//! * A [`Chain`] owns every buffer linked into it. Chains are plain values
//!   (16 bytes); the links live in the pool's metadata, so an empty chain
//!   holds no memory at all.
//! * Buffers go back with [`Pool::free`], [`Chain::consume`] (emptied
//!   buffers) or [`Chain::clear`]. Dropping a non-empty chain or a `Buf`
//!   leaks its buffers from the pool; debug builds assert against it.
//!
//! Nothing here allocates after [`Pool::new`].

mod chain;
mod pool;

pub use chain::{Chain, Chunks};
pub use pool::{Buf, BufId, Pool, PoolExhausted, MAX_POOL_BYTES};
