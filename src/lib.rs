//! s3-importd: imports files from Amazon S3 (and S3-compatible stores, and local folders) on a
//! schedule, checked against a data template, exactly once.
//!
//! See `ARCHITECTURE.md` for the map of the modules and the invariants they keep.

pub mod aws;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod events;
pub mod fault;
pub mod files;
pub mod formats;
pub mod infer;
pub mod keytemplate;
pub mod metrics;
pub mod pg_client;
pub mod policy;
pub mod probe;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod select;
pub mod sources;
pub mod spool;
pub mod state;
pub mod targets;
pub mod template;
pub mod text;
