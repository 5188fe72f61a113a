//! Every byte that touches a source or a destination passes through here:
//! reading local files, the S3-compatible client (OSS, S3, and the other
//! clouds' S3 endpoints), the local-directory destination, and the checksums
//! computed on the way.

pub mod beneath;
pub mod checksum;
pub mod http;
pub mod key;
pub mod limit;
pub mod local;
pub mod remote;
pub mod s3;
pub mod watch;
