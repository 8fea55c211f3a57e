//! epoll-specific guarantees: the per-turn receive budget.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};

use pollring_backends::buf::Pool;
use pollring_backends::epoll::{Epoll, EpollConfig};
use pollring_backends::{net, Driver, Event, Share};

/// However much is waiting, one connection gets at most `recv_budget`
/// receives per turn (fairness; it also bounds the backpressure overshoot),
/// including the turn in which it is carried over from the last one.
#[test]
fn one_connection_gets_at_most_its_budget_per_turn() {
    const BUDGET: usize = 2;
    let pool = Pool::new(NonZeroUsize::new(1024).unwrap(), NonZeroU32::new(1024).unwrap()).unwrap();
    let mut config = EpollConfig::default();
    config.recv_budget = BUDGET;
    let mut d = Epoll::new(pool, &config).unwrap();
    let l = net::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap().remove(0);
    let addr = l.local_addr().unwrap();
    d.listen(l.into(), Share::Alone).unwrap();
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    let mut events = Vec::new();
    let mut tokens = Vec::new();
    let start = Instant::now();
    while tokens.len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "accepts");
        d.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        for ev in events.drain(..) {
            if let Event::Accepted { fd, .. } = ev {
                tokens.push(d.add(fd).unwrap());
            }
        }
    }
    // Far more than one turn's budget waits on `a`: one turn leaves it on
    // the carry-over list. Then `b` gets its first edge in a turn that also
    // carries `a` over: `b` must not be read both at its edge and in the
    // carry-over of that same turn.
    let mut total = 0;
    a.write_all(&vec![1u8; 64 * 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    d.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
    for ev in events.drain(..) {
        if let Event::Recv { buf, .. } = ev {
            total += d.pool().data(&buf).len();
            d.pool_mut().free(buf);
        }
    }
    b.write_all(&vec![2u8; 64 * 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    while total < 128 * 1024 {
        assert!(start.elapsed() < Duration::from_secs(10), "data");
        d.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        let mut per_conn: HashMap<_, usize> = HashMap::new();
        for ev in events.drain(..) {
            if let Event::Recv { token, buf } = ev {
                *per_conn.entry(token).or_default() += 1;
                total += d.pool().data(&buf).len();
                d.pool_mut().free(buf);
            }
        }
        for (token, n) in per_conn {
            assert!(n <= BUDGET, "{token:?} got {n} receives in one turn, budget {BUDGET}");
        }
    }
}
