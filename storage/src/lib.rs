//! Every byte that touches a source or a destination passes through here:
//! reading local files, the S3-compatible client (OSS, S3, and the other
//! clouds' S3 endpoints), the local-directory destination, and the checksums
//! computed on the way.

pub mod azure;
pub mod beneath;
pub mod checksum;
pub mod health;
pub mod http;
pub mod key;
pub mod limit;
pub mod local;
pub mod meta;
pub mod remote;
pub mod s3;
pub mod watch;

/// Two malloc arenas instead of glibc's eight per core, for each of our
/// processes: their threads mostly wait on sockets, files and the job
/// store, and every arena keeps what it once held, so more of them only
/// made the resident size larger and less predictable (W2's peak fell from
/// 47 to 37 MiB; a manifest page served from a new blocking thread had
/// left its buffers in a new arena). Call first thing in `main`.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Sockets on 127.0.0.1 that fail the ways networks do, for the tables of
/// error lines.
#[cfg(test)]
pub(crate) mod test_net {
    use std::io::{Read, Write};

    /// Asserts `line` is one line a person can act on: it starts with
    /// `prefix`, says `want`, and holds no `Debug` dump of an error struct.
    pub(crate) fn assert_one_line(line: &str, prefix: &str, want: &str) {
        assert!(line.starts_with(prefix), "{line}");
        assert!(line.contains(want), "{want:?} missing: {line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(
            !line.contains('{') && !line.contains("Error {") && !line.contains("Failure("),
            "{line}"
        );
    }

    /// A port nothing listens on.
    pub(crate) fn refused_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// A one-thread TCP server that answers every connection with `reply`,
    /// or, when `reply` is empty, reads the request and never answers.
    pub(crate) fn server(reply: &'static [u8]) -> u16 {
        serve(reply, !reply.is_empty(), reply.is_empty())
    }

    /// Sends `reply` and then holds the connection open, sending no more.
    pub(crate) fn stall(reply: &'static [u8]) -> u16 {
        serve(reply, true, true)
    }

    fn serve(reply: &'static [u8], send: bool, hold: bool) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                if send {
                    let _ = c.write_all(reply);
                }
                if hold {
                    held.push(c);
                }
            }
        });
        port
    }
}
