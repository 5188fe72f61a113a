//! The `ossimport-agent` binary's start-up, as an operator meets it: key
//! creation, and refusals that name what is wrong before anything listens.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ossimport-agent"))
}

#[test]
fn init_creates_a_private_key_once_and_prints_its_public_half() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("agent_ed25519");
    let first = agent()
        .arg("--init")
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    let line = String::from_utf8(first.stdout).unwrap();
    assert!(line.starts_with("ssh-ed25519 "), "{line}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is the agent's identity");
    // Running it again keeps the key: an enrolled agent stays enrolled.
    let again = agent()
        .arg("--init")
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), line);
}

#[test]
fn refuses_to_start_with_secrets_others_can_read_or_a_missing_daemon_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("agent_ed25519");
    assert!(
        agent()
            .arg("--init")
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .success()
    );
    let start = |daemon_key: &std::path::Path, secrets: &std::path::Path| {
        agent()
            .arg("--key")
            .arg(&key)
            .arg("--daemon")
            .arg("127.0.0.1:1")
            .arg("--daemon-key")
            .arg(daemon_key)
            .arg("--secrets")
            .arg(secrets)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .output()
            .unwrap()
    };
    let missing = dir.path().join("no_such_daemon.pub");
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, "ak=sk\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = start(&missing, &secrets);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no_such_daemon.pub"), "{err}");

    // A daemon key that is there, and secrets the world can read.
    let daemon_pub = dir.path().join("daemon.pub");
    std::fs::write(
        &daemon_pub,
        String::from_utf8(
            agent()
                .arg("--init")
                .arg("--key")
                .arg(dir.path().join("other"))
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = start(&daemon_pub, &secrets);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&secrets.display().to_string()) && !err.contains("sk\n"),
        "{err}"
    );
}
