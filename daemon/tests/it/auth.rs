//! The agent channel is mutual TLS pinned to enrolled keys: a peer without
//! an enrolled key never completes a handshake and gets nothing read or
//! run, a client that pins another key refuses the server, a plain-HTTP
//! peer is told to upgrade, and a captured connection's bytes, replayed,
//! run nothing. Before, requests were plain HTTP with signature headers
//! that a forger could fill from public fingerprints to have up to 16 MiB
//! read.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use proto::auth::Signer;
use proto::client::{self, ClientError, Target};
use tokio_util::sync::CancellationToken;

use crate::support::*;

async fn post_tls(
    addr: &str,
    me: &Signer,
    peer: &proto::auth::PublicKey,
    path: &str,
    body: &[u8],
) -> Result<StatusCode, ClientError> {
    client::send(
        &Target::Tls {
            addr: addr.to_string(),
            from: None,
            config: proto::tls::client_config(me, peer).unwrap(),
        },
        Method::POST,
        path,
        &[],
        body.to_vec(),
        Duration::from_secs(10),
    )
    .await
    .map(|(s, _)| s)
}

/// A relay on 127.0.0.1 for one connection to `to` that records what the
/// client sent.
async fn recording_relay(to: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::clone(&sent);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, _) = l.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(&to).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = async move {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = cr.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    let _ = sw.shutdown().await;
                    break;
                }
                rec.lock().unwrap().extend_from_slice(&buf[..n]);
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        };
        let down = async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        };
        tokio::join!(up, down);
    });
    (addr, sent)
}

#[test]
fn agent_runs_batches_only_from_its_daemons_key() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    std::fs::write(src.join("b.txt"), b"again").unwrap();
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
    let batch_of = |task: i64, name: &str| {
        let md = std::fs::metadata(src.join(name)).unwrap();
        let mtime = md
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        serde_json::to_vec(&serde_json::json!({
            "job": plan.spec,
            "tasks": [{"task_id": task, "job_id": plan.spec.job_id, "objects": [
                {"object_id": task, "rel_path": name, "size": md.len(), "mtime": mtime, "resume": null}
            ]}],
        }))
        .unwrap()
    };
    let (batch_a, batch_b) = (batch_of(1, "a.txt"), batch_of(2, "b.txt"));
    // The same job writing outside the agent's --allow-root (a directory
    // of another temporary tree, as `/root/.ssh` would be).
    let outside = tempfile::tempdir().unwrap();
    let mut far = plan.spec.clone();
    if let proto::job::DestSpec::Local { dir, .. } = &mut far.dest {
        *dir = format!("{}/", outside.path().join("ssh").display());
    }
    let batch_far = serde_json::to_vec(&serde_json::json!({
        "job": far,
        "tasks": [{"task_id": 3, "job_id": far.job_id, "objects": []}],
    }))
    .unwrap();

    let daemon_key = Signer::random();
    let stranger = Signer::random();
    let agent_key = Signer::random();
    let agent_pub = agent_key.public_key().clone();
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
            request_timeout: Duration::from_secs(2),
            drain: Duration::from_millis(100),
            secrets: Default::default(),
            allow_roots: agent::roots::Roots::new(&[tmp.path().to_path_buf()]).unwrap(),
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(agent::server::run(
            config,
            agent_key,
            listener,
            stop.clone().cancelled_owned(),
        ));
        let tasks = proto::api::agent_path::TASKS;

        // Plain HTTP (an older daemon): told to upgrade, nothing run.
        let (status, body) = client::send(
            &Target::Tcp(addr.clone()),
            Method::POST,
            tasks,
            &[],
            batch_a.clone(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{body}");
        assert!(
            body.contains("TLS_REQUIRED") && body.contains("upgrade"),
            "{body}"
        );

        // A key the agent was not given: no handshake, nothing read.
        let e = post_tls(&addr, &stranger, &agent_pub, tasks, &batch_a)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused our key"), "{e}");
        // The daemon's key, but pinned to another agent's key: the client
        // refuses this server.
        let e = post_tls(&addr, &daemon_key, stranger.public_key(), tasks, &batch_a)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the one we were given"), "{e}");
        assert_eq!(
            std::fs::read_dir(&dest).unwrap().count(),
            0,
            "a refused request ran"
        );

        // The daemon's key, but a destination outside --allow-root: refused
        // with the reason, nothing made there.
        let (status, body) = client::send(
            &Target::Tls {
                addr: addr.clone(),
                from: None,
                config: proto::tls::client_config(&daemon_key, &agent_pub).unwrap(),
            },
            Method::POST,
            tasks,
            &[],
            batch_far,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body.contains("PATH_NOT_ALLOWED")
                && body.contains("outside the directories this agent may use"),
            "{body}"
        );
        assert!(!outside.path().join("ssh").exists());

        let wait_for = |p: std::path::PathBuf| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !p.exists() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} never came",
                    p.display()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        assert_eq!(
            post_tls(&addr, &daemon_key, &agent_pub, tasks, &batch_a)
                .await
                .unwrap(),
            StatusCode::OK
        );
        wait_for(dest.join("a.txt")).await;

        // A connection recorded on its way, then replayed byte for byte on
        // a new connection: the handshake cannot complete (fresh keys on
        // each side), so the batch does not run again.
        let (relay, recorded) = recording_relay(addr.clone()).await;
        assert_eq!(
            post_tls(&relay, &daemon_key, &agent_pub, tasks, &batch_b)
                .await
                .unwrap(),
            StatusCode::OK
        );
        wait_for(dest.join("b.txt")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::remove_file(dest.join("b.txt")).unwrap();
        let bytes = recorded.lock().unwrap().clone();
        assert!(
            bytes.len() > batch_b.len(),
            "recorded {} bytes",
            bytes.len()
        );
        assert!(
            !bytes.windows(5).any(|w| w == b"b.txt"),
            "the path travelled in clear text"
        );
        let addr2 = addr.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(&addr2).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&bytes);
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            answer
        })
        .await
        .unwrap();
        assert!(
            !answer.windows(6).any(|w| w == b"200 OK"),
            "the replay was answered"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!dest.join("b.txt").exists(), "the replayed batch ran");

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
    let stranger = Signer::random();
    // What an agent says of itself tries to forge log lines.
    let hb = serde_json::to_vec(&proto::api::Heartbeat {
        name: "intruder\r\nERROR forged line".into(),
        addr: "127.0.0.1:1\nERROR forged addr".into(),
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
        let e = post_tls(&d.addr, &stranger, &daemon_pub, path, &hb)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refused our key"), "{e}");
    });
    assert!(d.workers().workers.is_empty());
    assert!(d.log_text().contains("Refused a TLS handshake"));

    // Enrolled while the daemon runs: let in without a restart.
    let line = format!("{} intruder\n", stranger.public_key_openssh());
    std::fs::write(work.join("agent_keys"), &line).unwrap();
    // The key file is re-read at most once a second, as a heartbeat retries.
    let accepted = || {
        rt().block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while post_tls(&d.addr, &stranger, &daemon_pub, path, &hb)
                .await
                .ok()
                != Some(StatusCode::OK)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "enrolled key never accepted"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    accepted();
    // Revoked while its kept connection is open: refused on that
    // connection at once, and no new connection gets through.
    let config = proto::tls::client_config(&stranger, &daemon_pub).unwrap();
    let channel = client::Channel::tls(d.addr.clone(), None, config);
    let kept = rt();
    let t = Duration::from_secs(10);
    let (status, _) = kept
        .block_on(channel.send(Method::POST, path, hb.clone(), t))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let revoked: proto::api::Revoked = api(
        &d.socket,
        proto::control::Endpoint::Revoke("intruder".into()),
        None,
    );
    assert_eq!(
        revoked.fingerprints,
        vec![stranger.fingerprint().to_string()]
    );
    kept.block_on(async {
        let (status, _) = channel
            .send(Method::POST, path, hb.clone(), t)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let e = channel
            .send(Method::POST, path, hb.clone(), t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refused our key"), "{e}");
    });
    let w = d.workers();
    assert!(w.workers.is_empty(), "{:?}", w.workers);
    // Enrolled again, for what follows.
    std::fs::write(work.join("agent_keys"), &line).unwrap();
    accepted();
    let w = d.workers();
    assert_eq!(w.workers.len(), 1);
    assert_eq!(w.workers[0].state, "up");
    // Shown and logged on one line, escaped.
    assert_eq!(w.workers[0].name, "intruder\\r\\nERROR forged line");
    let log = d.log_text();
    assert!(log.contains("Agent joined"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged")),
        "a forged line in the log:\n{log}"
    );
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
fn send_big_plain(addr: &str, path: &str, len: u64) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The answer may come (and the server stop reading) before all of this
    // is written.
    let _ = write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
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

/// Anyone who can reach the agent port: 200 handshakes with keys nobody
/// enrolled and a 200 MiB plain-HTTP body get nothing read and leave the
/// daemon's memory flat, while an enrolled agent is served throughout.
/// Before, forged signature headers (fingerprints are public) got up to
/// 16 MiB read per connection.
#[test]
fn peers_without_an_enrolled_key_get_nothing_read() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let daemon_pub = Daemon::init(&work);
    let daemon_pub = proto::auth::parse_public_keys(&std::fs::read_to_string(daemon_pub).unwrap())
        .unwrap()
        .remove(0);
    let agent = Signer::random();
    std::fs::write(
        work.join("agent_keys"),
        format!("{} real\n", agent.public_key_openssh()),
    )
    .unwrap();
    let daemon = Daemon::start(&work, free_port());
    let pid = daemon.child.id();
    // Its memory holds its key: no core dump of it, ever.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    let hb = serde_json::to_vec(&proto::api::Heartbeat {
        name: "real".into(),
        addr: "127.0.0.1:1".into(),
        capacity: 1,
        fingerprint: agent.fingerprint().into(),
        ..Default::default()
    })
    .unwrap();
    let path = proto::api::agent_path::HEARTBEAT;
    let events = proto::api::agent_path::EVENTS;
    let before = rss_kib(pid);
    rt().block_on(async {
        for round in 0..25 {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let (addr, key, body) =
                    (daemon.addr.clone(), daemon_pub.clone(), vec![b'x'; 4 << 20]);
                set.spawn(async move {
                    let stranger = Signer::random();
                    post_tls(&addr, &stranger, &key, events, &body).await
                });
            }
            while let Some(r) = set.join_next().await {
                assert!(r.unwrap().is_err(), "a stranger was answered");
            }
            if round % 5 == 0 {
                assert_eq!(
                    post_tls(&daemon.addr, &agent, &daemon_pub, path, &hb)
                        .await
                        .unwrap(),
                    StatusCode::OK
                );
            }
        }
    });
    let status = send_big_plain(&daemon.addr, events, 200 << 20);
    assert!(status.contains(" 426 "), "answer: {status:?}");
    let after = rss_kib(pid);
    eprintln!("daemon RSS {before} KiB before, {after} KiB after 200 handshakes");
    assert!(
        after < before + 8 * 1024,
        "daemon RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(daemon.workers().workers.len(), 1);
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
    assert_eq!(
        extra.read(&mut buf).unwrap_or(0),
        0,
        "the 17th connection stayed open"
    );
    drop(held);
}
