//! Running programs, as the `postgres` user when we are root (PostgreSQL refuses to run as root).

use std::process::{Command, Output, Stdio};

pub type Result<T> = std::result::Result<T, String>;

pub fn is_root() -> bool {
    // SAFETY-free: reading our own uid through the id command keeps this crate dependency-free.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A command that runs as `postgres` when we are root, as ourselves otherwise.
pub fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Runs to completion; an error names the command and carries what it printed.
pub fn check(cmd: &mut Command, what: &str) -> Result<Output> {
    cmd.stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {what}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            stderr.trim(),
            stdout.trim()
        ));
    }
    Ok(out)
}
