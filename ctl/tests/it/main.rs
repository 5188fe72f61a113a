//! Integration tests of `ossimportctl run`: the real binary against a real
//! S3-compatible server (SeaweedFS, started per test on free ports).

// Test helpers are `pub` for the sibling modules of this one binary.
#![allow(unreachable_pub)]

mod audit;
mod changing_world;
mod config_errors;
mod console_shim;
mod daemon_verbs;
mod docs;
mod dry_run;
mod incremental;
mod integrity;
mod local_dest;
mod manifest;
mod metadata;
mod metrics;
mod migrate;
mod object_errors;
mod outages;
mod overwrite;
mod resume;
mod server_side;
mod sources;
mod state_dir;
mod support;
mod terminal;
mod tidy;
mod torture;
mod watch;
