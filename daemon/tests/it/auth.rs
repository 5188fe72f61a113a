//! Requests that are unsigned, signed by an unknown key, stale, replayed or
//! meant for someone else are refused with 401 and change nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use proto::auth::Signer;
use proto::client::{self, Target};
use tokio_util::sync::CancellationToken;

use crate::support::*;

async fn post(
    addr: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> StatusCode {
    client::send(
        &Target::Tcp(addr.to_string()),
        Method::POST,
        path,
        headers,
        body.to_vec(),
        Duration::from_secs(10),
    )
    .await
    .unwrap()
    .0
}

#[test]
fn agent_executes_only_fresh_requests_signed_by_its_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let cfg = tmp.path().join("job.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=auth\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    let plan = daemon::plan::load(&cfg, None).unwrap();
    let mtime = std::fs::metadata(src.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let batch = serde_json::to_vec(&serde_json::json!({
        "job": plan.spec,
        "tasks": [{"task_id": 1, "job_id": plan.spec.job_id, "objects": [
            {"object_id": 1, "rel_path": "a.txt", "size": 5, "mtime": mtime, "resume": null}
        ]}],
    }))
    .unwrap();

    let daemon_key = Signer::random();
    let stranger = Signer::random();
    let agent_key = Signer::random();
    let me = agent_key.fingerprint().to_string();
    let rt = rt();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = agent::server::Config {
            name: "solo".into(),
            daemon_addr: format!("127.0.0.1:{}", free_port()),
            daemon_key: daemon_key.public_key().clone(),
            advertise: addr.clone(),
            capacity: 2,
            heartbeat: Duration::from_millis(200),
            auth_window: Duration::from_secs(60),
            request_timeout: Duration::from_secs(2),
            drain: Duration::from_millis(100),
            secrets: Default::default(),
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(agent::server::run(
            config,
            agent_key,
            listener,
            stop.clone().cancelled_owned(),
        ));
        let tasks = proto::api::agent_path::TASKS;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();

        assert_eq!(
            post(&addr, tasks, &[], &batch).await,
            StatusCode::UNAUTHORIZED
        );
        let h = stranger.sign("POST", tasks, &batch, &me);
        assert_eq!(
            post(&addr, tasks, &h, &batch).await,
            StatusCode::UNAUTHORIZED
        );
        let h = daemon_key.sign_with(
            "POST",
            tasks,
            &batch,
            &me,
            now - 3600,
            "0123456789abcdef0123",
        );
        assert_eq!(
            post(&addr, tasks, &h, &batch).await,
            StatusCode::UNAUTHORIZED
        );
        let h = daemon_key.sign("POST", tasks, &batch, stranger.fingerprint());
        assert_eq!(
            post(&addr, tasks, &h, &batch).await,
            StatusCode::UNAUTHORIZED
        );
        let h = daemon_key.sign("POST", tasks, b"{}", &me);
        assert_eq!(
            post(&addr, tasks, &h, &batch).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            std::fs::read_dir(&dest).unwrap().count(),
            0,
            "a refused request ran"
        );

        let h = daemon_key.sign("POST", tasks, &batch, &me);
        assert_eq!(post(&addr, tasks, &h, &batch).await, StatusCode::OK);
        let copied = dest.join("a.txt");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !copied.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the signed batch did not run"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            post(&addr, tasks, &h, &batch).await,
            StatusCode::UNAUTHORIZED
        );

        stop.cancel();
        server.await.unwrap().unwrap();
    });
}

#[test]
fn daemon_ignores_agents_it_has_not_enrolled() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let port = free_port();
    let d = Daemon::start(&work, port);
    let daemon_pub = proto::auth::parse_public_keys(
        &std::fs::read_to_string(work.join("daemon_ed25519.pub")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let daemon_fp = proto::auth::fingerprint(&daemon_pub);
    let stranger = Signer::random();
    let hb = serde_json::to_vec(&proto::api::Heartbeat {
        name: "intruder".into(),
        addr: "127.0.0.1:1".into(),
        capacity: 8,
        running: vec![],
        fingerprint: stranger.fingerprint().into(),
        bytes: 0,
        version: String::new(),
        ..Default::default()
    })
    .unwrap();
    let path = proto::api::agent_path::HEARTBEAT;
    rt().block_on(async {
        assert_eq!(
            post(&d.addr, path, &[], &hb).await,
            StatusCode::UNAUTHORIZED
        );
        let h = stranger.sign("POST", path, &hb, &daemon_fp);
        assert_eq!(post(&d.addr, path, &h, &hb).await, StatusCode::UNAUTHORIZED);
    });
    assert!(d.workers().workers.is_empty());
    assert!(
        d.log_text()
            .contains("Refused unauthenticated agent request")
    );

    // Enrolled while the daemon runs: accepted without a restart, once.
    let line = format!("{} intruder\n", stranger.public_key_openssh());
    std::fs::write(work.join("agent_keys"), line).unwrap();
    // The key file is re-read at most once a second, as a heartbeat retries.
    rt().block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let h = loop {
            let h = stranger.sign("POST", path, &hb, &daemon_fp);
            if post(&d.addr, path, &h, &hb).await == StatusCode::OK {
                break h;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "enrolled key never accepted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(post(&d.addr, path, &h, &hb).await, StatusCode::UNAUTHORIZED);
    });
    let w = d.workers();
    assert_eq!(w.workers.len(), 1);
    assert_eq!(w.workers[0].state, "up");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Sends headers announcing `len` bytes, then as much of the body as the
/// server takes; returns the status line of the answer.
fn send_big_unsigned(addr: &str, path: &str, headers: &str, len: u64) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{headers}content-length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0u64;
        while sent < len {
            if w.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let sent = writer.join().unwrap();
    eprintln!("client wrote {} MiB before the server closed", sent >> 20);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Anyone who can reach the agent port: a 200 MiB body without a valid
/// signer, timestamp and nonce is refused from its headers, without the
/// daemon reading (and holding) it. Before the gate, the body was read whole
/// (up to 256 MiB) before the signature was checked.
#[test]
fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    Daemon::init(&work);
    let daemon = Daemon::start(&work, free_port());
    let pid = daemon.child.id();
    let before = rss_kib(pid);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Unsigned, then signed-looking by a key nobody enrolled.
    let forged = format!(
        "x-ossimport-key: SHA256:nobody\r\nx-ossimport-timestamp: {ts}\r\n\
         x-ossimport-nonce: 0123456789abcdef0123\r\nx-ossimport-signature: AAAA\r\n"
    );
    for headers in ["", forged.as_str()] {
        let status = send_big_unsigned(&daemon.addr, "/v1/agent/events", headers, 200 << 20);
        assert!(status.contains(" 401 "), "answer: {status:?}");
    }
    let after = rss_kib(pid);
    eprintln!("daemon RSS {before} KiB before, {after} KiB after");
    assert!(
        after < before + 8 * 1024,
        "daemon RSS grew from {before} KiB to {after} KiB"
    );
    // A peer cannot hold every connection slot either: past its share, new
    // connections are closed at once while the others stay open.
    let held: Vec<std::net::TcpStream> = (0..16)
        .map(|_| std::net::TcpStream::connect(&daemon.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = std::net::TcpStream::connect(&daemon.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    use std::io::Read;
    assert_eq!(
        extra.read(&mut buf).unwrap_or(0),
        0,
        "the 17th connection stayed open"
    );
    drop(held);
}
