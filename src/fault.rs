//! Fault points for the crash tests: with `S3_IMPORTD_FAULT=NAME` in the environment, the
//! process stops at the point called NAME and waits there to be killed, so a test can kill it
//! at an exact moment of a delivery; `NAME#N` stops there the N-th time the point is reached
//! (the second load of a run, say). `NAME!stop` instead stops the process with SIGSTOP there,
//! as a pause of the host would, and goes on when it is continued (the fleet tests' paused
//! daemon). `NAME!sleep=SECS` holds the thread that reaches it for SECS seconds and goes on
//! (a stalled step, while the rest of the process — lease renewals — runs). Without the
//! variable every point is a no-op.
//!
//! This is a test hook, not a feature: nothing else reads the variable.

use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the fault point to stop at.
pub const ENV: &str = "S3_IMPORTD_FAULT";

/// How many times the named point has been reached.
static REACHED: AtomicU64 = AtomicU64::new(0);

/// Stops here, forever, when this point is the one named in [`ENV`] (and this is the N-th
/// time it is reached, with `NAME#N`).
pub fn point(name: &str) {
    let Ok(wanted) = std::env::var(ENV) else {
        return;
    };
    let (wanted, sleep) = match wanted.split_once("!sleep=") {
        Some((point, secs)) => (point.to_string(), secs.parse::<u64>().ok()),
        None => (wanted, None),
    };
    let (wanted, pause) = match wanted.strip_suffix("!stop") {
        Some(point) => (point.to_string(), true),
        None => (wanted, false),
    };
    let (wanted, nth) = match wanted.split_once('#') {
        Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
        None => (wanted, 1),
    };
    if wanted == name && REACHED.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        if let Some(secs) = sleep {
            eprintln!("fault point {name} reached; sleeping {secs} s");
            std::thread::sleep(std::time::Duration::from_secs(secs));
            return;
        }
        if pause {
            eprintln!("fault point {name} reached; stopping the process");
            // SAFETY: raise only sends a signal to this process.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
            eprintln!("fault point {name}: continued");
            return;
        }
        eprintln!("fault point {name} reached; waiting to be killed");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
