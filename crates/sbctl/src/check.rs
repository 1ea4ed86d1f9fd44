//! Placeholder for `sbctl check-config`: the validator lives in `switchboard-core`, whose API is
//! not settled yet, so this reports itself unavailable instead of guessing at it.

use std::path::Path;

/// Exit code meaning "the check could not be performed" (distinct from 1, "config invalid").
const EXIT_UNAVAILABLE: i32 = 2;

/// Checks the filter configuration at `path`; `print` asks for the validated config on stdout.
pub fn run(path: &Path, print: bool) -> anyhow::Result<i32> {
    let _ = (path, print);
    println!("check-config: not available");
    Ok(EXIT_UNAVAILABLE)
}
