//! What ossimportctl writes about itself: `template` for every sort of job,
//! filled in as a user would (paths, keys, endpoints) and accepted by
//! `run --dry-run` against real servers; the man pages rendering with
//! `man -l`; the bash completion loading.

use std::collections::HashMap;
use std::process::Command;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_template_filled_in_passes_a_dry_run() {
    use testkit::azure::{ACCOUNT, Azurite, KEY};
    let s3 = S3Server::start();
    s3.create_bucket("tpl").await;
    s3.create_bucket("tplsrc").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = tree(&src, 3, 100);
    s3.fill_from_dir(&src, "tplsrc", "");
    let files: HashMap<String, Vec<u8>> = rels
        .iter()
        .map(|r| (format!("/f/{r}"), std::fs::read(src.join(r)).unwrap()))
        .collect();
    let server = testkit::net::FileServer::start(files).await;
    let list = tmp.path().join("http.list");
    let lines: String = rels
        .iter()
        .map(|r| format!("{}/f/ {r}\n", server.base))
        .collect();
    std::fs::write(&list, lines).unwrap();
    let az = Azurite::start();
    az.create_container("tplc");

    for kind in ["local", "s3", "oss", "http", "azure", "audit"] {
        let out = ctl().args(["template", kind]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(&format!("({kind} job)")), "{text}");
        let filled = text
            .replace("jobName=local_test", &format!("jobName=tpl_{kind}"))
            .replace("/path/to/source/", &format!("{}/", src.display()))
            .replace("/path/to/http.list", &list.display().to_string())
            .replace("https://oss-cn-hangzhou.aliyuncs.com", &s3.endpoint)
            .replace("dest-bucket", "tpl")
            .replace("DEST_ACCESS_KEY_ID", AK)
            .replace("DEST_ACCESS_KEY_SECRET", SK)
            .replace("https://s3.us-east-1.amazonaws.com", &s3.endpoint)
            .replace("https://oss-cn-shanghai.aliyuncs.com", &s3.endpoint)
            .replace("source-bucket", "tplsrc")
            .replace("SOURCE_ACCESS_KEY_ID", AK)
            .replace("SOURCE_SECRET_ACCESS_KEY", SK)
            .replace("SOURCE_ACCESS_KEY_SECRET", SK)
            .replace(
                "srcDomain=core.windows.net",
                &format!("srcDomain=http://127.0.0.1:{}/{ACCOUNT}", az.port),
            )
            .replace("STORAGE_ACCOUNT_NAME", ACCOUNT)
            .replace("STORAGE_ACCOUNT_KEY", KEY)
            .replace("source-container", "tplc");
        // Every value the template asks to replace was replaced.
        let placeholders = [
            "/path/to/",
            "_KEY_ID",
            "_SECRET",
            "STORAGE_ACCOUNT",
            "-bucket",
            "-container",
        ];
        assert!(
            !filled
                .lines()
                .any(|l| !l.starts_with('#') && placeholders.iter().any(|p| l.contains(p))),
            "a value left to fill in:\n{filled}"
        );
        let cfg = tmp.path().join(format!("{kind}.cfg"));
        std::fs::write(&cfg, &filled).unwrap();
        let out = ctl()
            .arg("run")
            .arg(&cfg)
            .args(["--dry-run", "--work-dir"])
            .arg(tmp.path().join("work"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{kind}: {}{}\n{filled}",
            stdout(&out),
            stderr(&out)
        );
    }
}

#[test]
fn man_pages_render_and_the_bash_completion_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let (man, comp) = (tmp.path().join("man"), tmp.path().join("completions"));
    for (what, dir) in [("man", &man), ("completions", &comp)] {
        let out = ctl().arg("generate").arg(what).arg(dir).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    for (page, must) in [
        ("ossimportctl.1", "deploy"),
        ("ossimportctl-submit.1", "--dry-run"),
        ("ossimportd.8", "--socket-group"),
        ("ossimport-agent.8", "--daemon-key"),
        ("ossimport-job.cfg.5", "multipartUploadPartSize"),
        ("ossimport-sys.properties.5", "daemonAddress"),
    ] {
        let path = man.join(page);
        assert!(path.is_file(), "{page} not written");
        if std::path::Path::new("/usr/bin/man").exists() {
            let out = Command::new("man")
                .arg("-l")
                .arg(&path)
                .env("MANWIDTH", "100")
                .env("MANPAGER", "cat")
                .env("PAGER", "cat")
                .output()
                .unwrap();
            let text = stdout(&out);
            assert!(out.status.success(), "man -l {page}: {}", stderr(&out));
            assert!(
                text.contains("NAME") && text.contains(must),
                "{page}:\n{text}"
            );
            assert!(
                !stderr(&out).contains("warning"),
                "{page}: {}",
                stderr(&out)
            );
        }
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p ossimportctl",
            comp.join("ossimportctl.bash").display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ossimportctl"), "{}", stdout(&out));
    assert!(comp.join("_ossimportctl").is_file() && comp.join("ossimportctl.fish").is_file());
}

/// ARCHITECTURE.md names the test behind each invariant as
/// `path/to/file.rs::test_name`; each must still exist, as a function in
/// that file under a test attribute, so the document cannot go on citing a
/// test that was renamed or removed.
#[test]
fn every_test_named_in_the_architecture_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for cited in doc.split('`').skip(1).step_by(2) {
        let Some((file, test)) = cited.split_once(".rs::") else {
            continue;
        };
        named += 1;
        let path = root.join(format!("{file}.rs"));
        let code = std::fs::read_to_string(&path).unwrap_or_default();
        // A function of that name with a test attribute just above it.
        let lines: Vec<&str> = code.lines().collect();
        let is_test = lines.iter().enumerate().any(|(i, l)| {
            let l = l.trim_start();
            (l.starts_with(&format!("fn {test}(")) || l.starts_with(&format!("async fn {test}(")))
                && lines[i.saturating_sub(3)..i]
                    .iter()
                    .any(|a| a.contains("#[test]") || a.contains("#[tokio::test"))
        });
        if !is_test {
            missing.push(format!("{file}.rs::{test}"));
        }
    }
    assert!(named >= 30, "only {named} tests named in ARCHITECTURE.md");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names tests that do not exist: {missing:#?}"
    );
}
