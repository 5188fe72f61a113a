//! The agent side: the executor that copies and verifies the objects of a
//! task, reporting every step as a `proto::job::Event`.
//!
//! The same executor runs inside `ossimportctl run` (standalone) and, in
//! distributed mode, inside the `ossimport-agent` service.

pub mod upload;
pub mod worker;
