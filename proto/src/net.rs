//! One line for a request that got no answer, shared by every client we
//! have (the S3 client, the HTTP source, the daemon-agent channel): what
//! happened at the bottom of the error chain in words a person can act on,
//! never a library's `Debug` dump.

use std::error::Error;
use std::io::ErrorKind;
use std::time::Duration;

/// How long to wait before retrying a request: the one backoff rule of
/// every retry loop we own (the SDK's own retries are configured apart).
/// Doubling from `base` per attempt, capped at `cap`, with the upper half
/// jittered so many workers retrying at once spread out.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let half = full / 2;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let span = half.as_nanos().max(1) as u64;
        half + Duration::from_nanos(u64::from(nanos) % (span + 1))
    }
}

/// `text` with control characters escaped (`\n`, `\r`, `\t`, `\u{..}`), so
/// a name from a peer, a listing or a file system stays on one line of a
/// log or of human output and cannot forge another. Raw bytes stay in
/// JSON and manifests.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A log writer that keeps each record on its line: every control
/// character of a record but its final line end (and, on a terminal, the
/// colour escapes) is written escaped, so a name in a field (a path, an
/// error from a peer) cannot start a forged log line. The logging layer
/// hands it one whole record per write.
pub struct OneLine<W> {
    inner: W,
    ansi: bool,
}

impl<W: std::io::Write> OneLine<W> {
    pub fn new(inner: W, ansi: bool) -> OneLine<W> {
        OneLine { inner, ansi }
    }
}

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let keep = |b: u8| b == b'\t' || (self.ansi && b == 0x1b);
        if body.iter().all(|&b| !(b.is_ascii_control()) || keep(b)) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b if b.is_ascii_control() && !keep(b) => {
                    out.extend_from_slice(format!("\\x{b:02x}").as_bytes())
                }
                b => out.push(b),
            }
        }
        out.extend_from_slice(&buf[body.len()..]);
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Describes `err` (and its causes) as one line: the class of failure, what
/// to check, and the deepest cause as the OS or TLS library put it.
/// `timeout` is the limit that applied, named when the request timed out.
pub fn no_answer(err: &(dyn Error + 'static), timeout: Option<Duration>) -> String {
    let mut chain: Vec<String> = Vec::new();
    let mut io_kind = None;
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        let text = e.to_string();
        if !text.is_empty() && !chain.iter().any(|c| c.contains(&text)) {
            chain.push(text.replace('\n', " "));
        }
        cur = e.source();
    }
    let all = chain.join(": ").to_ascii_lowercase();
    let what = if io_kind == Some(ErrorKind::TimedOut)
        || all.contains("timeout")
        || all.contains("timed out")
    {
        timed_out(timeout)
    } else {
        classify(io_kind, &all).to_string()
    };
    // The deepest cause, as the OS or TLS library put it.
    match chain.last() {
        Some(root) if what != NO_ANSWER => format!("{what} [{root}]"),
        Some(root) => format!("{what}: {root}"),
        None => what,
    }
}

/// The line for a request that ran out of time.
pub fn timed_out(timeout: Option<Duration>) -> String {
    let after = timeout
        .map(|t| format!(" after {} s", t.as_secs().max(1)))
        .unwrap_or_default();
    format!(
        "timed out{after} (check that the endpoint is reachable from this host and not blocked by a firewall)"
    )
}

const NO_ANSWER: &str = "no answer";

fn classify(io_kind: Option<ErrorKind>, all: &str) -> &'static str {
    if io_kind == Some(ErrorKind::ConnectionRefused) || all.contains("connection refused") {
        "connection refused (is the host and port right, and the service running there?)"
    } else if all.contains("dns error")
        || all.contains("failed to lookup address")
        || all.contains("name or service not known")
        || all.contains("no address")
    {
        "name not found (check the domain name and this host's DNS)"
    } else if [
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "alert",
    ]
    .iter()
    .any(|w| all.contains(w))
    {
        "TLS failed: the server's certificate is not trusted or the handshake failed (check the https address, or the CA bundle)"
    } else if matches!(
        io_kind,
        Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof)
    ) || all.contains("connection reset")
        || all.contains("broken pipe")
        || all.contains("connection closed")
        || all.contains("incomplete message")
    {
        "the connection was cut by the server or the network"
    } else if io_kind == Some(ErrorKind::PermissionDenied) {
        "permission denied (check who may connect, e.g. the socket's owner and mode)"
    } else {
        NO_ANSWER
    }
}

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM: the one shutdown
/// signal of `ossimportd`, `ossimport-agent` and `ossimportctl run`.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{OneLine, printable};

    #[test]
    fn a_log_record_stays_on_its_line() {
        use std::io::Write;
        let mut out = Vec::new();
        OneLine::new(&mut out, false)
            .write_all(b"WARN path=a\nERROR forged\r\x1b[31m\n")
            .unwrap();
        assert_eq!(out, b"WARN path=a\\nERROR forged\\r\\x1b[31m\n");
        let mut out = Vec::new();
        OneLine::new(&mut out, true)
            .write_all(b"\x1b[33mWARN\x1b[0m\tok\n")
            .unwrap();
        assert_eq!(out, b"\x1b[33mWARN\x1b[0m\tok\n");
    }

    #[test]
    fn control_characters_are_escaped_on_one_line() {
        assert_eq!(printable("a/b c.txt"), "a/b c.txt");
        assert_eq!(
            printable("x\r\nINFO forged line\t\u{1b}[31m"),
            "x\\r\\nINFO forged line\\t\\u{1b}[31m"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_the_upper_half_jittered() {
        let b = super::Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
        };
        for (attempt, full) in [(0, 200), (1, 400), (3, 1600), (7, 20_000), (40, 20_000)] {
            let d = b.delay(attempt);
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    use super::*;

    #[test]
    fn classes_by_cause() {
        let io = |k: ErrorKind, m: &str| std::io::Error::new(k, m.to_string());
        let cases: [(std::io::Error, &str); 5] = [
            (
                io(ErrorKind::ConnectionRefused, "os error 111"),
                "connection refused",
            ),
            (
                io(ErrorKind::Other, "failed to lookup address information"),
                "name not found",
            ),
            (io(ErrorKind::TimedOut, "deadline"), "timed out after 7 s"),
            (
                io(ErrorKind::ConnectionReset, "reset"),
                "connection was cut",
            ),
            (io(ErrorKind::Other, "odd"), "no answer: odd"),
        ];
        for (e, want) in cases {
            let line = no_answer(&e, Some(Duration::from_secs(7)));
            assert!(line.contains(want), "{line}");
            assert!(!line.contains('{') && !line.contains('\n'), "{line}");
        }
    }
}
