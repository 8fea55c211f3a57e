//! Test helpers: `pollring::testing` (feature `test-util`: the backend
//! macro, server start-up, clients with time-outs), plus the handlers these
//! tests share.

#![allow(dead_code)]

#[allow(unused_imports)] // not every test file emits backend pairs
pub use pollring::on_both_backends;
pub use pollring::testing::*;

use pollring::{Cx, Handler};

/// Echoes every byte back, zero-copy.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        let n = cx.input().len();
        cx.forward(n);
    }
}

/// Echoes by copying (`write`) instead of forwarding, to cover that path.
#[derive(Debug, Default)]
pub struct CopyEcho;

impl Handler for CopyEcho {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        let data = cx.input().contiguous().to_vec();
        cx.consume(data.len());
        cx.write(&data);
    }
}
