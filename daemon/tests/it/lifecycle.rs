//! The daemon as an operator runs it: detached with pid and log files, one
//! per socket, and a clean stop on SIGTERM.

use std::process::Command;

use crate::support::*;

#[test]
fn detaches_refuses_a_second_instance_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let port = free_port();
    let out = Command::new(bin("ossimportd"))
        .arg("--daemon")
        .arg("--work-dir")
        .arg(&work)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = work.join("ossimportd.sock");
    wait_for("the detached daemon", 30, || {
        api_try::<serde_json::Value>(&socket, hyper::Method::GET, "/v1/version", None).is_ok()
    });
    let pid: u32 = std::fs::read_to_string(work.join("ossimportd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let second = Command::new(bin("ossimportd"))
        .arg("--work-dir")
        .arg(&work)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another ossimportd is already listening"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_for("the daemon to exit", 30, || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(!socket.exists(), "the socket file was left behind");
    let log = std::fs::read_to_string(work.join("ossimportd.log")).unwrap();
    assert!(log.contains("Daemon ready."), "{log}");
    assert!(log.contains("Daemon stopped; job store closed."), "{log}");
}
