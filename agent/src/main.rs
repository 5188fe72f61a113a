//! `ossimport-agent`: distributed mode is not implemented in this build yet.

fn main() -> std::process::ExitCode {
    eprintln!("ossimport-agent: distributed mode is not implemented in this build yet; use `ossimportctl run job.cfg`");
    std::process::ExitCode::from(5)
}
