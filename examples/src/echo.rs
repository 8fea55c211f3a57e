//! The echo protocol: every byte received is sent back, in order.

use pollring::{Cx, Handler};

/// Echoes input to output without copying: received pool buffers are moved
/// onto the output chain as they are.
#[derive(Debug, Default, Clone, Copy)]
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
