//! The commands: a table of names and arities, and one function each.
//!
//! Replies and error messages are Redis 7's, byte for byte where a client
//! might look at them (`-ERR wrong number of arguments for 'get' command`,
//! `-ERR unknown command 'foo', with args beginning with: `, ...). Only
//! strings are stored, so there is no `WRONGTYPE`.
//!
//! Supported: PING, ECHO, GET, SET (EX, PX, NX, XX, KEEPTTL, GET), DEL,
//! EXISTS, INCR, DECR, INCRBY, DECRBY, MGET, MSET, EXPIRE, PEXPIRE (NX, XX,
//! GT, LT), TTL, PTTL, PERSIST, DBSIZE, FLUSHALL, FLUSHDB, SELECT 0, QUIT,
//! and what `redis-cli` and `redis-benchmark` ask on connecting: COMMAND
//! (empty replies), HELLO 2, CLIENT SETNAME/GETNAME/SETINFO/ID, CONFIG GET,
//! INFO, AUTH (refused: no password is configured).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::parser::{parse_i64, Args};
use super::reply::{self, Sink};
use super::store::{ExpireCondition, IncrError, SetCondition, SetExpiry, Store, Ttl};

/// The Redis version this server claims in HELLO and INFO (the protocol
/// behaviour it follows).
pub const REDIS_VERSION: &str = "7.0.0";

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Send what was written, then close (QUIT).
    Close,
}

/// Per-connection state commands may change.
#[derive(Debug)]
pub struct Session {
    id: u64,
    name: Option<Box<[u8]>>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A new connection's state, with a process-unique client id.
    pub fn new() -> Session {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Session { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), name: None }
    }

    /// The id CLIENT ID reports.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name set by CLIENT SETNAME or HELLO SETNAME.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }
}

/// What one command runs with.
struct Call<'a, 'r> {
    args: Args<'r>,
    store: &'a Store,
    session: &'a mut Session,
    now: Instant,
    out: &'a mut dyn Sink,
}

impl<'r> Call<'_, 'r> {
    /// Argument `i`; the arity check has made sure it exists (an empty slice
    /// otherwise, never a panic).
    fn arg(&self, i: usize) -> &'r [u8] {
        self.args.get(i).unwrap_or_default()
    }

    /// Arguments from `i` on.
    fn args_from(&self, i: usize) -> impl Iterator<Item = &'r [u8]> + Clone + 'r {
        self.args.iter().skip(i)
    }

    fn error(&mut self, msg: &str) -> Flow {
        reply::error(self.out, msg.as_bytes());
        Flow::Continue
    }

    /// Argument `i` as an integer, or the Redis error written.
    fn integer_arg(&mut self, i: usize) -> Option<i64> {
        let n = parse_i64(self.arg(i));
        if n.is_none() {
            self.error(NOT_AN_INTEGER);
        }
        n
    }
}

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX_ERROR: &str = "ERR syntax error";

/// A command: its name, its arity the Redis way (`n`: exactly `n`
/// arguments with the name; `-n`: at least `n`), and its code.
struct Command {
    name: &'static str,
    arity: i32,
    run: fn(&mut Call<'_, '_>) -> Flow,
}

/// Every command, the hot ones first (lookup is a linear scan).
const COMMANDS: &[Command] = &[
    Command { name: "get", arity: 2, run: get },
    Command { name: "set", arity: -3, run: set },
    Command { name: "ping", arity: -1, run: ping },
    Command { name: "incr", arity: 2, run: |c| incr_by(c, 1) },
    Command { name: "decr", arity: 2, run: |c| incr_by(c, -1) },
    Command { name: "incrby", arity: 3, run: incrby },
    Command { name: "decrby", arity: 3, run: decrby },
    Command { name: "mget", arity: -2, run: mget },
    Command { name: "mset", arity: -3, run: mset },
    Command { name: "del", arity: -2, run: del },
    Command { name: "exists", arity: -2, run: exists },
    Command { name: "expire", arity: -3, run: |c| expire(c, Unit::Seconds) },
    Command { name: "pexpire", arity: -3, run: |c| expire(c, Unit::Millis) },
    Command { name: "ttl", arity: 2, run: |c| ttl(c, Unit::Seconds) },
    Command { name: "pttl", arity: 2, run: |c| ttl(c, Unit::Millis) },
    Command { name: "persist", arity: 2, run: persist },
    Command { name: "echo", arity: 2, run: echo },
    Command { name: "dbsize", arity: 1, run: dbsize },
    Command { name: "flushall", arity: -1, run: flush },
    Command { name: "flushdb", arity: -1, run: flush },
    Command { name: "select", arity: 2, run: select },
    Command { name: "quit", arity: -1, run: quit },
    Command { name: "command", arity: -1, run: command },
    Command { name: "hello", arity: -1, run: hello },
    Command { name: "client", arity: -2, run: client },
    Command { name: "config", arity: -2, run: config },
    Command { name: "info", arity: -1, run: info },
    Command { name: "auth", arity: -2, run: auth },
];

fn arity_ok(arity: i32, argc: usize) -> bool {
    let want = arity.unsigned_abs() as usize;
    if arity < 0 {
        argc >= want
    } else {
        argc == want
    }
}

/// Runs the command in `args` (not empty) and writes its reply to `out`.
pub fn execute(
    args: Args<'_>,
    store: &Store,
    session: &mut Session,
    now: Instant,
    out: &mut dyn Sink,
) -> Flow {
    let Some(name) = args.get(0) else { return Flow::Continue };
    let Some(cmd) = COMMANDS.iter().find(|c| c.name.as_bytes().eq_ignore_ascii_case(name)) else {
        unknown_command(args, out);
        return Flow::Continue;
    };
    if !arity_ok(cmd.arity, args.len()) {
        wrong_arity(out, cmd.name);
        return Flow::Continue;
    }
    (cmd.run)(&mut Call { args, store, session, now, out })
}

fn wrong_arity(out: &mut dyn Sink, name: &str) {
    reply::error(out, format!("ERR wrong number of arguments for '{name}' command").as_bytes());
}

/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `, the
/// name and the argument list each cut at 128 bytes, as Redis writes it.
fn unknown_command(args: Args<'_>, out: &mut dyn Sink) {
    const MAX: usize = 128;
    let name = args.get(0).unwrap_or_default();
    let mut msg = b"ERR unknown command '".to_vec();
    msg.extend_from_slice(&name[..name.len().min(MAX)]);
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut listed = Vec::new();
    for arg in args.iter().skip(1) {
        if listed.len() >= MAX {
            break;
        }
        let room = MAX - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(&arg[..arg.len().min(room)]);
        listed.extend_from_slice(b"' ");
    }
    msg.extend_from_slice(&listed);
    reply::error(out, &msg);
}

fn unknown_subcommand(c: &mut Call<'_, '_>, command: &str) -> Flow {
    let sub = c.arg(1);
    let mut msg = b"ERR unknown subcommand '".to_vec();
    msg.extend_from_slice(&sub[..sub.len().min(128)]);
    msg.extend_from_slice(format!("'. Try {command} HELP.").as_bytes());
    reply::error(c.out, &msg);
    Flow::Continue
}

fn ping(c: &mut Call<'_, '_>) -> Flow {
    match c.args.len() {
        1 => reply::simple(c.out, "PONG"),
        2 => {
            let message = c.arg(1);
            reply::bulk(c.out, message);
        }
        _ => wrong_arity(c.out, "ping"),
    }
    Flow::Continue
}

fn echo(c: &mut Call<'_, '_>) -> Flow {
    let message = c.arg(1);
    reply::bulk(c.out, message);
    Flow::Continue
}

fn get(c: &mut Call<'_, '_>) -> Flow {
    let key = c.arg(1);
    let out = &mut *c.out;
    c.store.with_value(key, c.now, |v| reply::bulk_or_null(out, v));
    Flow::Continue
}

/// EX/PX as given, checked after the syntax (as Redis orders its errors).
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
}

/// `now + amount` in `unit`, or `None` if not positive or too far.
fn deadline(now: Instant, amount: i64, unit: Unit) -> Option<Instant> {
    let ms = match unit {
        Unit::Seconds => amount.checked_mul(1000)?,
        Unit::Millis => amount,
    };
    let ms = u64::try_from(ms).ok().filter(|&ms| ms > 0)?;
    now.checked_add(Duration::from_millis(ms))
}

/// SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | KEEPTTL]
fn set(c: &mut Call<'_, '_>) -> Flow {
    let mut condition = SetCondition::Always;
    let mut want_old = false;
    let mut keep_ttl = false;
    let mut expire: Option<(Unit, &[u8])> = None;
    let mut i = 3;
    while i < c.args.len() {
        let opt = c.arg(i);
        let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
        let has_next = i + 1 < c.args.len();
        if is("nx") && condition != SetCondition::IfPresent {
            condition = SetCondition::IfAbsent;
        } else if is("xx") && condition != SetCondition::IfAbsent {
            condition = SetCondition::IfPresent;
        } else if is("get") {
            want_old = true;
        } else if is("keepttl") && expire.is_none() {
            keep_ttl = true;
        } else if (is("ex") || is("px")) && has_next && !keep_ttl && expire.is_none() {
            let unit = if is("ex") { Unit::Seconds } else { Unit::Millis };
            expire = Some((unit, c.arg(i + 1)));
            i += 1;
        } else {
            return c.error(SYNTAX_ERROR);
        }
        i += 1;
    }
    let expiry = match expire {
        None if keep_ttl => SetExpiry::Keep,
        None => SetExpiry::Persist,
        Some((unit, amount)) => {
            let Some(amount) = parse_i64(amount) else { return c.error(NOT_AN_INTEGER) };
            match deadline(c.now, amount, unit) {
                Some(at) => SetExpiry::At(at),
                None => return c.error("ERR invalid expire time in 'set' command"),
            }
        }
    };
    let outcome = c.store.set(c.arg(1), c.arg(2), condition, expiry, want_old, c.now);
    if want_old {
        reply::bulk_or_null(c.out, outcome.old.as_deref());
    } else if outcome.applied {
        reply::ok(c.out);
    } else {
        reply::null(c.out);
    }
    Flow::Continue
}

fn incr_by(c: &mut Call<'_, '_>, delta: i64) -> Flow {
    match c.store.incr_by(c.arg(1), delta, c.now) {
        Ok(n) => reply::integer(c.out, n),
        Err(IncrError::NotAnInteger) => return c.error(NOT_AN_INTEGER),
        Err(IncrError::Overflow) => return c.error("ERR increment or decrement would overflow"),
    }
    Flow::Continue
}

fn incrby(c: &mut Call<'_, '_>) -> Flow {
    match c.integer_arg(2) {
        Some(delta) => incr_by(c, delta),
        None => Flow::Continue,
    }
}

fn decrby(c: &mut Call<'_, '_>) -> Flow {
    match c.integer_arg(2).map(i64::checked_neg) {
        Some(Some(delta)) => incr_by(c, delta),
        Some(None) => c.error("ERR decrement would overflow"),
        None => Flow::Continue,
    }
}

fn mget(c: &mut Call<'_, '_>) -> Flow {
    reply::array(c.out, c.args.len() - 1);
    let out = &mut *c.out;
    c.store.with_values(c.args.iter().skip(1), c.now, |v| reply::bulk_or_null(out, v));
    Flow::Continue
}

fn mset(c: &mut Call<'_, '_>) -> Flow {
    if c.args.len() % 2 == 0 {
        wrong_arity(c.out, "mset");
        return Flow::Continue;
    }
    let keys = c.args_from(1).step_by(2);
    let values = c.args_from(2).step_by(2);
    c.store.set_many(keys.zip(values));
    reply::ok(c.out);
    Flow::Continue
}

fn del(c: &mut Call<'_, '_>) -> Flow {
    let n = c.store.delete(c.args_from(1), c.now);
    reply::integer(c.out, n as i64);
    Flow::Continue
}

fn exists(c: &mut Call<'_, '_>) -> Flow {
    let n = c.store.count_existing(c.args_from(1), c.now);
    reply::integer(c.out, n as i64);
    Flow::Continue
}

/// EXPIRE key seconds [NX | XX | GT | LT], and PEXPIRE in milliseconds.
fn expire(c: &mut Call<'_, '_>, unit: Unit) -> Flow {
    let mut condition = ExpireCondition::Always;
    for opt in c.args_from(3) {
        let new = match opt.to_ascii_uppercase().as_slice() {
            b"NX" => ExpireCondition::IfNone,
            b"XX" => ExpireCondition::IfSome,
            b"GT" => ExpireCondition::IfLater,
            b"LT" => ExpireCondition::IfEarlier,
            _ => {
                let mut msg = b"ERR Unsupported option ".to_vec();
                msg.extend_from_slice(opt);
                reply::error(c.out, &msg);
                return Flow::Continue;
            }
        };
        use ExpireCondition::*;
        condition = match (condition, new) {
            (Always, new) => new,
            (old, new) if old == new => new,
            (IfLater, IfEarlier) | (IfEarlier, IfLater) => {
                return c.error("ERR GT and LT options at the same time are not compatible")
            }
            _ => {
                return c
                    .error("ERR NX and XX, GT or LT options at the same time are not compatible")
            }
        };
    }
    let Some(amount) = c.integer_arg(2) else { return Flow::Continue };
    let name = match unit {
        Unit::Seconds => "expire",
        Unit::Millis => "pexpire",
    };
    let ms = match unit {
        Unit::Seconds => amount.checked_mul(1000),
        Unit::Millis => Some(amount),
    };
    // A deadline not in the future deletes the key; one too far to
    // represent is refused, as Redis refuses one past `i64` milliseconds.
    let at = match ms {
        Some(ms) if ms <= 0 => Some(c.now),
        Some(ms) => c.now.checked_add(Duration::from_millis(ms.unsigned_abs())),
        None => None,
    };
    let Some(at) = at else {
        return c.error(&format!("ERR invalid expire time in '{name}' command"));
    };
    let applied = c.store.expire(c.arg(1), at, condition, c.now);
    reply::integer(c.out, i64::from(applied));
    Flow::Continue
}

fn ttl(c: &mut Call<'_, '_>, unit: Unit) -> Flow {
    let n = match c.store.ttl(c.arg(1), c.now) {
        Ttl::Missing => -2,
        Ttl::Persistent => -1,
        Ttl::Remaining(left) => {
            let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
            match unit {
                // Rounded to the nearest second, as Redis does.
                Unit::Seconds => ms.saturating_add(500) / 1000,
                Unit::Millis => ms,
            }
        }
    };
    reply::integer(c.out, n);
    Flow::Continue
}

fn persist(c: &mut Call<'_, '_>) -> Flow {
    let had = c.store.persist(c.arg(1), c.now);
    reply::integer(c.out, i64::from(had));
    Flow::Continue
}

fn dbsize(c: &mut Call<'_, '_>) -> Flow {
    reply::integer(c.out, i64::try_from(c.store.len()).unwrap_or(i64::MAX));
    Flow::Continue
}

/// FLUSHALL / FLUSHDB [ASYNC | SYNC]: both modes flush at once.
fn flush(c: &mut Call<'_, '_>) -> Flow {
    let mode_ok = match c.args.len() {
        1 => true,
        2 => [&b"async"[..], b"sync"].iter().any(|m| c.arg(1).eq_ignore_ascii_case(m)),
        _ => false,
    };
    if !mode_ok {
        return c.error(SYNTAX_ERROR);
    }
    c.store.clear();
    reply::ok(c.out);
    Flow::Continue
}

/// SELECT: there is one database, 0.
fn select(c: &mut Call<'_, '_>) -> Flow {
    match c.integer_arg(1) {
        Some(0) => reply::ok(c.out),
        Some(_) => return c.error("ERR DB index is out of range"),
        None => {}
    }
    Flow::Continue
}

fn quit(c: &mut Call<'_, '_>) -> Flow {
    reply::ok(c.out);
    Flow::Close
}

/// COMMAND [COUNT | LIST | DOCS | INFO ...]: enough for clients that ask
/// on connecting (`redis-cli` asks COMMAND DOCS for its hints). No
/// per-command documentation is served: DOCS, INFO and a bare COMMAND reply
/// with an empty array, which clients read as "nothing known".
fn command(c: &mut Call<'_, '_>) -> Flow {
    if c.args.len() == 1 {
        reply::array(c.out, 0);
        return Flow::Continue;
    }
    let sub = c.arg(1).to_ascii_lowercase();
    match sub.as_slice() {
        b"docs" | b"info" => reply::array(c.out, 0),
        b"count" if c.args.len() == 2 => reply::integer(c.out, COMMANDS.len() as i64),
        b"list" if c.args.len() == 2 => {
            reply::array(c.out, COMMANDS.len());
            for cmd in COMMANDS {
                reply::bulk(c.out, cmd.name.as_bytes());
            }
        }
        b"count" | b"list" => {
            let name = format!("command|{}", String::from_utf8_lossy(&sub));
            wrong_arity(c.out, &name);
        }
        _ => return unknown_subcommand(c, "COMMAND"),
    }
    Flow::Continue
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]: only
/// protocol 2 is spoken; the reply is the server-info map, flattened into
/// an array as RESP2 does.
fn hello(c: &mut Call<'_, '_>) -> Flow {
    if c.args.len() >= 2 {
        match parse_i64(c.arg(1)) {
            None => return c.error("ERR Protocol version is not an integer or out of range"),
            Some(2) => {}
            Some(_) => return c.error("NOPROTO sorry, this protocol version is not supported"),
        }
    }
    let mut name = None;
    let mut i = 2;
    while i < c.args.len() {
        let opt = c.arg(i);
        let left = c.args.len() - i - 1;
        if opt.eq_ignore_ascii_case(b"auth") && left >= 2 {
            // No password is configured: any credentials are accepted, as
            // Redis accepts them for its passwordless default user.
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"setname") && left >= 1 {
            name = Some(c.arg(i + 1));
            i += 2;
        } else {
            let mut msg = b"ERR Syntax error in HELLO option '".to_vec();
            msg.extend_from_slice(opt);
            msg.push(b'\'');
            reply::error(c.out, &msg);
            return Flow::Continue;
        }
    }
    if let Some(name) = name {
        if !set_client_name(c, name) {
            return Flow::Continue;
        }
    }
    let out = &mut *c.out;
    reply::array(out, 14);
    for (key, value) in [("server", "redis"), ("version", REDIS_VERSION)] {
        reply::bulk(out, key.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
    reply::bulk(out, b"proto");
    reply::integer(out, 2);
    reply::bulk(out, b"id");
    reply::integer(out, i64::try_from(c.session.id).unwrap_or(i64::MAX));
    for (key, value) in [("mode", "standalone"), ("role", "master")] {
        reply::bulk(out, key.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
    reply::bulk(out, b"modules");
    reply::array(out, 0);
    Flow::Continue
}

/// Sets the connection's name (empty: none), or writes Redis's error for
/// a name with spaces or control characters and returns false.
fn set_client_name(c: &mut Call<'_, '_>, name: &[u8]) -> bool {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        c.error("ERR Client names cannot contain spaces, newlines or special characters.");
        return false;
    }
    c.session.name = (!name.is_empty()).then(|| name.into());
    true
}

/// CLIENT SETNAME | GETNAME | SETINFO | ID.
fn client(c: &mut Call<'_, '_>) -> Flow {
    let sub = c.arg(1).to_ascii_lowercase();
    let arity = match sub.as_slice() {
        b"setname" => 3,
        b"getname" | b"id" => 2,
        b"setinfo" => 4,
        _ => return unknown_subcommand(c, "CLIENT"),
    };
    if c.args.len() != arity {
        wrong_arity(c.out, &format!("client|{}", String::from_utf8_lossy(&sub)));
        return Flow::Continue;
    }
    match sub.as_slice() {
        b"setname" => {
            if set_client_name(c, c.arg(2)) {
                reply::ok(c.out);
            }
        }
        b"getname" => reply::bulk_or_null(c.out, c.session.name.as_deref()),
        b"id" => reply::integer(c.out, i64::try_from(c.session.id).unwrap_or(i64::MAX)),
        _ => {
            // SETINFO LIB-NAME | LIB-VER value: accepted and not kept.
            let attr = c.arg(2);
            if attr.eq_ignore_ascii_case(b"lib-name") || attr.eq_ignore_ascii_case(b"lib-ver") {
                reply::ok(c.out);
            } else {
                let mut msg = b"ERR Unrecognized option '".to_vec();
                msg.extend_from_slice(attr);
                msg.push(b'\'');
                reply::error(c.out, &msg);
            }
        }
    }
    Flow::Continue
}

/// The configuration CONFIG GET reports (`redis-benchmark` reads `save`
/// and `appendonly`): no persistence, one database.
const CONFIG: &[(&str, &str)] = &[("save", ""), ("appendonly", "no"), ("databases", "1")];

/// CONFIG GET parameter [parameter ...]; a parameter is a name or `*`.
fn config(c: &mut Call<'_, '_>) -> Flow {
    if !c.arg(1).eq_ignore_ascii_case(b"get") {
        return unknown_subcommand(c, "CONFIG");
    }
    if c.args.len() < 3 {
        wrong_arity(c.out, "config|get");
        return Flow::Continue;
    }
    let matches = |(name, _): &&(&str, &str)| {
        c.args_from(2).any(|p| p == b"*" || p.eq_ignore_ascii_case(name.as_bytes()))
    };
    let found: Vec<_> = CONFIG.iter().filter(matches).collect();
    reply::array(c.out, found.len() * 2);
    for (name, value) in found {
        reply::bulk(c.out, name.as_bytes());
        reply::bulk(c.out, value.as_bytes());
    }
    Flow::Continue
}

/// INFO [section ...]: a short server and keyspace section, whatever is
/// asked.
fn info(c: &mut Call<'_, '_>) -> Flow {
    let (keys, expires) = (c.store.len(), c.store.volatile_len());
    let text = format!(
        "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\n\
         process_id:{}\r\n\r\n# Keyspace\r\ndb0:keys={keys},expires={expires},avg_ttl=0\r\n",
        std::process::id()
    );
    reply::bulk(c.out, text.as_bytes());
    Flow::Continue
}

fn auth(c: &mut Call<'_, '_>) -> Flow {
    c.error(
        "ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::parser::{Limits, Parser};

    /// Runs each command line (inline syntax) and returns the replies.
    fn run(store: &Store, lines: &[&str]) -> Vec<String> {
        let mut session = Session::new();
        let now = Instant::now();
        lines
            .iter()
            .map(|line| {
                let input = format!("{line}\r\n");
                let mut parser = Parser::new(Limits::default());
                let len = parser.scan([input.as_bytes()]).unwrap().unwrap();
                let mut out = Vec::new();
                execute(parser.args(&input.as_bytes()[..len]), store, &mut session, now, &mut out);
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    #[test]
    fn string_commands() {
        let store = Store::default();
        let got = run(
            &store,
            &["SET k v", "get k", "GET nope", "SET k w NX", "SET k w XX GET", "GET k", "DEL k x"],
        );
        assert_eq!(
            got,
            [
                "+OK\r\n",
                "$1\r\nv\r\n",
                "$-1\r\n",
                "$-1\r\n",
                "$1\r\nv\r\n",
                "$1\r\nw\r\n",
                ":1\r\n"
            ]
        );
    }

    #[test]
    fn errors_in_redis_words() {
        let store = Store::default();
        let got = run(
            &store,
            &[
                "GET",
                "foo a b",
                "foo",
                "SET k v EX 0",
                "SET k v EX x",
                "SET k v NX XX",
                "SET k v EX 10 PX 10",
                "INCRBY n x",
                "MSET a",
                "MSET a 1 b",
            ],
        );
        assert_eq!(
            got,
            [
                "-ERR wrong number of arguments for 'get' command\r\n",
                "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
                "-ERR unknown command 'foo', with args beginning with: \r\n",
                "-ERR invalid expire time in 'set' command\r\n",
                "-ERR value is not an integer or out of range\r\n",
                "-ERR syntax error\r\n",
                "-ERR syntax error\r\n",
                "-ERR value is not an integer or out of range\r\n",
                "-ERR wrong number of arguments for 'mset' command\r\n",
                "-ERR wrong number of arguments for 'mset' command\r\n",
            ]
        );
    }

    #[test]
    fn counters() {
        let store = Store::default();
        let got =
            run(&store, &["INCR n", "INCRBY n 10", "DECR n", "DECRBY n -5", "SET s x", "INCR s"]);
        assert_eq!(
            got,
            [
                ":1\r\n",
                ":11\r\n",
                ":10\r\n",
                ":15\r\n",
                "+OK\r\n",
                "-ERR value is not an integer or out of range\r\n"
            ]
        );
        let got =
            run(&store, &["SET m 9223372036854775807", "INCR m", "DECRBY m -9223372036854775808"]);
        assert_eq!(
            got,
            [
                "+OK\r\n",
                "-ERR increment or decrement would overflow\r\n",
                "-ERR decrement would overflow\r\n"
            ]
        );
    }

    #[test]
    fn expiry_commands() {
        let store = Store::default();
        let got = run(
            &store,
            &[
                "TTL k",
                "SET k v",
                "TTL k",
                "EXPIRE k 100",
                "TTL k",
                "EXPIRE k 50 GT",
                "PERSIST k",
                "EXPIRE k -1",
                "EXISTS k",
            ],
        );
        assert_eq!(
            got,
            [
                ":-2\r\n", "+OK\r\n", ":-1\r\n", ":1\r\n", ":100\r\n", ":0\r\n", ":1\r\n",
                ":1\r\n", ":0\r\n"
            ]
        );
    }

    #[test]
    fn connection_commands() {
        let store = Store::default();
        let got = run(
            &store,
            &[
                "PING",
                "PING hi",
                "PING a b",
                "ECHO x",
                "HELLO 3",
                "HELLO x",
                "CLIENT SETNAME a b",
                "CLIENT SETNAME me",
                "CLIENT GETNAME",
                "CLIENT NOPE",
                "QUIT",
            ],
        );
        assert_eq!(
            got,
            [
                "+PONG\r\n",
                "$2\r\nhi\r\n",
                "-ERR wrong number of arguments for 'ping' command\r\n",
                "$1\r\nx\r\n",
                "-NOPROTO sorry, this protocol version is not supported\r\n",
                "-ERR Protocol version is not an integer or out of range\r\n",
                "-ERR wrong number of arguments for 'client|setname' command\r\n",
                "+OK\r\n",
                "$2\r\nme\r\n",
                "-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.\r\n",
                "+OK\r\n",
            ]
        );
        let hello = &run(&store, &["HELLO 2"])[0];
        assert!(hello.starts_with("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), "{hello}");
    }
}
