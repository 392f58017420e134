//! Fault points for the crash tests: with `S3_IMPORTD_FAULT=NAME` in the environment, the
//! process stops at the point called NAME and waits there to be killed, so a test can kill it
//! at an exact moment of a delivery. Without the variable every point is a no-op.
//!
//! This is a test hook, not a feature: nothing else reads the variable.

/// The environment variable naming the fault point to stop at.
pub const ENV: &str = "S3_IMPORTD_FAULT";

/// Stops here, forever, when this point is the one named in [`ENV`].
pub fn point(name: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == name) {
        eprintln!("fault point {name} reached; waiting to be killed");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
