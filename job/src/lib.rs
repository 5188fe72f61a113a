//! A job as its files say it, with no network and no store: `job.cfg` and
//! `sys.properties` read with their one key table ([`config`]), the include
//! and exclude globs ([`filter`]), the HTTP list's lines ([`http_list`]),
//! and the [`plan`] made of them (the executors' `JobSpec` and the
//! listing's [`scan::ScanConfig`]). Shared by `ossimportd`, `ossimportctl`
//! (its daemon verbs and `deploy` read jobs and worker lists through it)
//! and the tests. Checking that the source and destination answer is the
//! daemon's (`daemon::preflight`).

pub mod config;
pub mod filter;
pub mod http_list;
pub mod plan;
pub mod scan;
