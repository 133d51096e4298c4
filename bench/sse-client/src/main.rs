//! The native SSE load client of `bench/sse-fanout.js`: holds N SSE connections on one thread and
//! histograms publish→receive latency of every event, like the Node client but at a fraction of
//! its CPU (the clients share the machine with the server being measured).
//!
//! Driven over stdin/stdout, one JSON object per line: it prints `{"ready":true}`, then answers
//! each `{"id", "cmd", ...}` with `{"id", "ok", "reply"}` or `{"id", "ok": false, "error"}`.
//! Commands: `connect { url, n, total }`, `window { s0, s1 }`, `count`, `report`, `close`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memchr::memmem::Finder;
use serde_json::{json, Value};
use std::os::fd::AsRawFd;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

// The same histogram as the Node side: 0.1 ms bins below 100 ms, 1 ms bins up to 10 s, overflow.
const FINE: usize = 1000;
const COARSE: usize = 9900;
const BINS: usize = FINE + COARSE + 1;
const CONNECT_CONCURRENCY: usize = 64;
const CONNECT_TIMEOUT_MS: u64 = 30_000;
const CONNECT_MS_PER_CLIENT: u64 = 2;

fn bin(latency: f64) -> usize {
    if latency < 0.0 {
        0
    } else if latency < 100.0 {
        (latency * 10.0) as usize
    } else if latency < 10_000.0 {
        FINE + (latency - 100.0) as usize
    } else {
        BINS - 1
    }
}

/// Wall-clock milliseconds, as `performance.timeOrigin + performance.now()` in the publisher.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[derive(Default)]
struct Conn {
    open: bool,
    closed: bool,
    received: u64,
    last_id: Option<u64>,
    checked: bool,
}

struct Stats {
    hist: Vec<u32>,
    max: f64,
    received: u64,
    checked: u64,
    bad: u64,
    outside: u64,
    out_of_order: u64,
    window: Option<(u64, u64)>,
    conns: Vec<Conn>,
    loop_delay: Vec<u32>,
    loop_delay_max: f64,
}

type Shared = Rc<RefCell<Stats>>;

// Built once: building a searcher per call cost more than the search.
static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\":"));
static T: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"t\":"));
static ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"id: "));
static BLANK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
static HEAD_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));

fn parse_u64(s: &[u8]) -> Option<u64> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&s[..digits]).ok()?.parse().ok()
}

fn parse_f64(s: &[u8]) -> Option<f64> {
    let len = s
        .iter()
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        .count();
    std::str::from_utf8(&s[..len]).ok()?.parse().ok()
}

/// One SSE block (the text between blank lines) received at `t`.
fn on_block(stats: &mut Stats, idx: usize, block: &[u8], t: f64) {
    let Some(i) = SEQ.find(block) else {
        return; // a comment (`: connected`, heartbeat), `retry:` or an id-only message
    };
    let seq = parse_u64(&block[i + 6..]);
    let sent = T
        .find(&block[i..])
        .and_then(|j| parse_f64(&block[i + j + 4..]));
    let (Some(seq), Some(sent)) = (seq, sent) else {
        stats.bad += 1;
        return;
    };
    if !stats.conns[idx].checked {
        stats.conns[idx].checked = true;
        stats.checked += 1;
        let ok = block
            .split(|b| *b == b'\n')
            .find(|l| l.starts_with(b"data:"))
            .and_then(|l| serde_json::from_slice::<Value>(&l[5..]).ok())
            .is_some_and(|e| {
                e["payload"]["seq"].as_u64() == Some(seq)
                    // serde_json's float parsing may differ from std's in the last bit (at
                    // ~1.7e12 ms a bit is ~0.0002 ms)
                    && e["payload"]["t"].as_f64().is_some_and(|t| (t - sent).abs() < 1e-3)
                    && e["type"] == "bench.tick"
            });
        if !ok {
            stats.bad += 1;
        }
    }
    // Order and duplicates by the SSE id (the bus's position; Nest's id is seq + 1).
    let id = ID
        .find(&block[..i])
        .and_then(|k| parse_u64(&block[k + 4..]));
    let conn = &mut stats.conns[idx];
    if id.is_none_or(|id| conn.last_id.is_some_and(|last| id <= last)) {
        stats.out_of_order += 1;
    }
    conn.last_id = id;
    match stats.window {
        Some((s0, s1)) if seq >= s0 && seq < s1 => {
            stats.conns[idx].received += 1;
            stats.received += 1;
            let latency = t - sent;
            stats.hist[bin(latency)] += 1;
            if latency > stats.max {
                stats.max = latency;
            }
        }
        _ => stats.outside += 1,
    }
}

enum Chunk {
    Size(Vec<u8>),
    Data(usize),
    Crlf(usize),
}

/// Per-connection decoding state: chunked framing, then SSE blocks.
struct Decoder {
    chunked: bool,
    chunk: Chunk,
    sse: Vec<u8>,
    ended: bool,
}

impl Decoder {
    fn body(&mut self, stats: &mut Stats, idx: usize, data: &[u8], t: f64) {
        if !self.chunked {
            return self.text(stats, idx, data, t);
        }
        let mut pos = 0;
        while pos < data.len() && !self.ended {
            match &mut self.chunk {
                Chunk::Data(left) => {
                    let take = (*left).min(data.len() - pos);
                    *left -= take;
                    let done = *left == 0;
                    self.text(stats, idx, &data[pos..pos + take], t);
                    pos += take;
                    if done {
                        self.chunk = Chunk::Crlf(2);
                    }
                }
                Chunk::Crlf(left) => {
                    let take = (*left).min(data.len() - pos);
                    *left -= take;
                    pos += take;
                    if *left == 0 {
                        self.chunk = Chunk::Size(Vec::new());
                    }
                }
                Chunk::Size(line) => match memchr::memchr(b'\n', &data[pos..]) {
                    None => {
                        line.extend_from_slice(&data[pos..]);
                        pos = data.len();
                    }
                    Some(nl) => {
                        line.extend_from_slice(&data[pos..pos + nl]);
                        pos += nl + 1;
                        let text = String::from_utf8_lossy(line);
                        let hex = text.trim().split(';').next().unwrap_or("");
                        match usize::from_str_radix(hex, 16) {
                            Ok(0) | Err(_) => self.ended = true,
                            Ok(n) => self.chunk = Chunk::Data(n),
                        }
                    }
                },
            }
        }
    }

    fn text(&mut self, stats: &mut Stats, idx: usize, data: &[u8], t: f64) {
        self.sse.extend_from_slice(data);
        let mut start = 0;
        while let Some(end) = BLANK.find(&self.sse[start..]) {
            on_block(stats, idx, &self.sse[start..start + end], t);
            start += end + 2;
        }
        self.sse.drain(..start);
    }
}

struct Target {
    addr: String,
    request: Vec<u8>,
}

fn target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target {
        addr: host.to_string(),
        request: format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        )
        .into_bytes(),
    })
}

thread_local! {
    // One read buffer for every connection of this thread: a socket is read only when readable.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// Opens one connection; Ok once the server answered 200, then keeps reading in the background.
async fn open(target: Rc<Target>, stats: Shared, idx: usize) -> Result<(), String> {
    let mut stream = TcpStream::connect(&target.addr)
        .await
        .map_err(|e| e.kind().to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .write_all(&target.request)
        .await
        .map_err(|e| e.kind().to_string())?;
    let mut head = Vec::new();
    let (chunked, rest) = loop {
        let n = read_some(&stream, |data| head.extend_from_slice(data)).await?;
        if n == 0 {
            return Err("closed".into());
        }
        if let Some(end) = HEAD_END.find(&head) {
            let status = String::from_utf8_lossy(&head[..end.min(12)]).to_string();
            if !status.starts_with("HTTP/1.1 200") {
                return Err(format!("HTTP {}", status.get(9..12).unwrap_or("?")));
            }
            let lower = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let chunked = lower.contains("\r\ntransfer-encoding: chunked");
            break (chunked, head[end + 4..].to_vec());
        }
    };
    stats.borrow_mut().conns[idx].open = true;
    tokio::task::spawn_local(async move {
        let mut decoder = Decoder {
            chunked,
            chunk: Chunk::Size(Vec::new()),
            sse: Vec::new(),
            ended: false,
        };
        decoder.body(&mut stats.borrow_mut(), idx, &rest, now_ms());
        loop {
            let read = read_some(&stream, |data| {
                let t = now_ms();
                decoder.body(&mut stats.borrow_mut(), idx, data, t);
            })
            .await;
            if !matches!(read, Ok(n) if n > 0) || decoder.ended {
                break;
            }
        }
        stats.borrow_mut().conns[idx].closed = true;
    });
    Ok(())
}

/// One `recv(2)`, without the runtime's readiness bookkeeping (`try_io` does that around it).
fn recv(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: a valid socket fd and a writable buffer of buf.len() bytes.
    let n = unsafe { libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Waits until the socket is readable and hands what one read got to `f` (0 at end of stream).
/// A read shorter than the buffer drained the socket: readiness is cleared then and there (the
/// runtime's epoll is edge-triggered, so data arriving later signals again) instead of by a
/// second read that would only say "would block" — that halves the client's syscalls.
async fn read_some(stream: &TcpStream, mut f: impl FnMut(&[u8])) -> Result<usize, String> {
    loop {
        stream.readable().await.map_err(|e| e.to_string())?;
        let mut got = None;
        let read = READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            stream.try_io(Interest::READABLE, || {
                let n = recv(stream, &mut buf)?;
                f(&buf[..n]);
                got = Some(n);
                if n > 0 && n < buf.len() {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            })
        });
        if let Some(n) = got {
            return Ok(n);
        }
        match read {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.kind().to_string()),
            Ok(()) => {}
        }
    }
}

async fn connect(stats: Shared, url: &str, n: usize, total: usize) -> Result<Value, String> {
    let target = Rc::new(target(url)?);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(CONNECT_TIMEOUT_MS + CONNECT_MS_PER_CLIENT * total as u64);
    let next = Rc::new(RefCell::new(0usize));
    let outcome = Rc::new(RefCell::new((0usize, serde_json::Map::new())));
    let mut workers = Vec::new();
    for _ in 0..CONNECT_CONCURRENCY.min(n) {
        let (target, stats, next, outcome) =
            (target.clone(), stats.clone(), next.clone(), outcome.clone());
        workers.push(tokio::task::spawn_local(async move {
            loop {
                {
                    let mut next = next.borrow_mut();
                    if *next >= n {
                        return;
                    }
                    *next += 1;
                }
                let result = if tokio::time::Instant::now() >= deadline {
                    Err("not tried (deadline)".to_string())
                } else {
                    let idx = {
                        let mut s = stats.borrow_mut();
                        s.conns.push(Conn::default());
                        s.conns.len() - 1
                    };
                    match tokio::time::timeout_at(
                        deadline,
                        open(target.clone(), stats.clone(), idx),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err("timeout".into()),
                    }
                };
                let mut o = outcome.borrow_mut();
                match result {
                    Ok(()) => o.0 += 1,
                    Err(e) => {
                        let count = o.1.get(&e).and_then(Value::as_u64).unwrap_or(0);
                        o.1.insert(e, json!(count + 1));
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let (ok, errors) = outcome.borrow().clone();
    Ok(json!({ "ok": ok, "errors": errors }))
}

fn quantile_ms(hist: &[u32], q: f64) -> f64 {
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    let rank = (q * total as f64).ceil() as u64;
    let mut seen = 0;
    for (i, &c) in hist.iter().enumerate() {
        seen += u64::from(c);
        if seen >= rank && total > 0 {
            return if i < FINE {
                (i + 1) as f64 / 10.0
            } else {
                100.0 + (i - FINE) as f64 + 1.0
            };
        }
    }
    0.0
}

fn report(stats: &Stats) -> Value {
    let open: Vec<&Conn> = stats.conns.iter().filter(|c| c.open && !c.closed).collect();
    json!({
        "hist": stats.hist,
        "max": stats.max,
        "received": stats.received,
        "open": open.len(),
        "dropped": stats.conns.iter().filter(|c| c.open && c.closed).count(),
        "minPerConn": open.iter().map(|c| c.received).min().unwrap_or(0),
        "checked": stats.checked,
        "badEvents": stats.bad,
        "loopDelayMs": {
            "p50": quantile_ms(&stats.loop_delay, 0.5),
            "p99": quantile_ms(&stats.loop_delay, 0.99),
            "max": stats.loop_delay_max,
        },
        "outside": stats.outside,
        "outOfOrder": stats.out_of_order,
    })
}

async fn handle(stats: &Shared, msg: &Value) -> Result<Value, String> {
    let field = |k: &str| msg[k].as_u64().ok_or_else(|| format!("missing {k}"));
    match msg["cmd"].as_str().unwrap_or("") {
        "connect" => {
            let url = msg["url"].as_str().ok_or("missing url")?;
            connect(
                stats.clone(),
                url,
                field("n")? as usize,
                field("total")? as usize,
            )
            .await
        }
        "window" => {
            let mut s = stats.borrow_mut();
            s.window = Some((field("s0")?, field("s1")?));
            s.loop_delay.iter_mut().for_each(|c| *c = 0);
            s.loop_delay_max = 0.0;
            Ok(Value::Null)
        }
        "count" => {
            let s = stats.borrow();
            let open = s.conns.iter().filter(|c| c.open && !c.closed).count();
            Ok(json!({ "received": s.received, "open": open }))
        }
        "report" => Ok(report(&stats.borrow())),
        "close" => std::process::exit(0),
        other => Err(format!("unknown command {other}")),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let stats: Shared = Rc::new(RefCell::new(Stats {
            hist: vec![0; BINS],
            max: 0.0,
            received: 0,
            checked: 0,
            bad: 0,
            outside: 0,
            out_of_order: 0,
            window: None,
            conns: Vec::new(),
            loop_delay: vec![0; BINS],
            loop_delay_max: 0.0,
        }));
        // How late this thread runs a 10 ms timer (a late client adds its delay to every latency).
        let delay_stats = stats.clone();
        tokio::task::spawn_local(async move {
            loop {
                let t0 = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let late = t0.elapsed().as_secs_f64() * 1000.0 - 10.0;
                let mut s = delay_stats.borrow_mut();
                let b = bin(late);
                s.loop_delay[b] += 1;
                if late > s.loop_delay_max {
                    s.loop_delay_max = late;
                }
            }
        });
        // Commands come from a plain thread reading stdin; its end (the parent gone) ends us.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
            std::process::exit(0);
        });
        println!("{}", json!({ "ready": true }));
        while let Some(line) = rx.recv().await {
            let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let id = msg["id"].clone();
            let out = match handle(&stats, &msg).await {
                Ok(reply) => json!({ "id": id, "ok": true, "reply": reply }),
                Err(error) => json!({ "id": id, "ok": false, "error": error }),
            };
            println!("{out}");
        }
    });
}
