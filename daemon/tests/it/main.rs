//! Integration tests of distributed mode: the real `ossimportd` and
//! `ossimport-agent` processes, real HTTP, a real S3-compatible server.

// Test helpers are `pub` for the sibling modules of this one binary.
#![allow(unreachable_pub)]

mod auth;
mod cluster;
mod deploy;
mod deploy_package;
mod distributed;
mod governor;
mod incremental;
mod lifecycle;
mod listing;
mod live_limits;
mod manifest;
mod netns;
mod observe;
mod outages;
mod packages;
mod runbook;
mod support;
mod systemd;
mod trust;
mod watch;
