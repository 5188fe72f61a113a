//! The `packaging/console.sh` shim maps the original's verbs onto
//! `ossimportctl`: checked with a recording stand-in for the binary.

use std::process::Command;

#[test]
fn console_sh_maps_the_original_verbs() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    std::fs::create_dir_all(home.join("conf")).unwrap();
    std::fs::write(home.join("conf/local_job.cfg"), "jobName=local_test\n").unwrap();
    std::fs::write(home.join("conf/sys.properties"), "workingDir=.\n").unwrap();
    // A stand-in that prints its arguments, so the mapping itself is checked.
    let fake = home.join("fakectl");
    std::fs::write(&fake, "#!/bin/sh\necho \"$@\"\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let shim = crate::support::repo_root().join("packaging/console.sh");
    let run = |args: &[&str]| {
        let out = Command::new(&shim)
            .args(args)
            .env("OSS_IMPORT_HOME", home)
            .env("OSSIMPORTCTL", &fake)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let sys = home.join("conf/sys.properties").display().to_string();
    let job = home.join("conf/local_job.cfg").display().to_string();
    assert_eq!(
        run(&["stat"]),
        (Some(0), format!("stat --legacy --sys {sys}"))
    );
    assert_eq!(
        run(&["submit"]),
        (Some(0), format!("submit {job} --sys {sys}"))
    );
    assert_eq!(
        run(&["clean"]),
        (Some(0), format!("clean local_test --sys {sys}"))
    );
    assert_eq!(
        run(&["retry", "job1"]),
        (Some(0), format!("retry job1 --sys {sys}"))
    );
    assert_eq!(run(&["bogus"]).0, Some(2));
}
