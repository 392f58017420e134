//! The steps of `s3-importd check`, printed as they finish: `ok`, `warn`, `FAILED` (with the
//! cause and the fix to try) or `skipped` (an earlier step it needs failed).
//!
//! Each kind of source and target probes itself into a [`Report`] (its `check`); the command
//! orders the steps and turns a failure into the exit code. Printing is all this does.

/// Prints steps as they finish and remembers whether one failed.
#[derive(Debug, Default)]
pub struct Report {
    failed: bool,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Whether a step failed.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    pub fn ok(&mut self, step: &str, detail: impl AsRef<str>) {
        println!("  ok       {step}: {}", detail.as_ref());
    }

    pub fn warn(&mut self, step: &str, detail: impl AsRef<str>) {
        println!("  warn     {step}: {}", detail.as_ref());
    }

    pub fn failed(&mut self, step: &str, cause: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failed = true;
        // Causes from the SDK can span lines; keep them inside the step's column.
        println!(
            "  FAILED   {step}: {}",
            cause.as_ref().replace('\n', "\n           ")
        );
        println!("           fix: {}", fix.as_ref());
    }

    pub fn skipped(&mut self, step: &str, needs: &str) {
        println!("  skipped  {step}: needs {needs}");
    }
}
