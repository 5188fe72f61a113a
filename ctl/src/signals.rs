//! Ctrl-C and SIGTERM for `ossimportctl run`.

use tokio_util::sync::CancellationToken;

use crate::exit;

/// The first Ctrl-C or SIGTERM cancels `cancel` (in-flight work finishes,
/// the next run resumes); a second Ctrl-C quits at once.
pub(crate) fn on_interrupt(cancel: CancellationToken) {
    // Detached: lives as long as the process.
    tokio::spawn(async move {
        proto::net::shutdown_signal().await;
        eprintln!("\nstopping: finishing in-flight work (press Ctrl-C again to quit at once)");
        cancel.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(exit::INTERRUPTED as i32);
    });
}
