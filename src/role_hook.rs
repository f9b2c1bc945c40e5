//! `pg_leader.on_role_change`: a command run when this server becomes leader or follows a new
//! leader, for users who move a virtual IP or re-point a pooler. `%r` is replaced by the role
//! (`leader` or `follower`), `%t` by the term, `%l` by the leader's id and `%%` by `%`.
//!
//! The command runs through `/bin/sh -c` in a child process that the worker checks on each turn
//! of its loop, never waits for: the election goes on while it runs. One command runs at a
//! time; changes that happen meanwhile are coalesced into the latest one. A command still
//! running after the timeout is killed. Exit status and the start of its output are logged.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(60);
const LOGGED_OUTPUT: u64 = 1024;

/// Where a command stands, for the worker to log.
pub enum Outcome {
    Started(String),
    CouldNotStart(String, std::io::Error),
    Finished(String, std::process::ExitStatus, String),
    TimedOut(String),
    /// Its status could not be read.
    Lost(String, std::io::Error),
}

struct Running {
    child: Child,
    command: String,
    started: Instant,
}

pub struct RoleHook {
    /// The setting's value; empty means off.
    template: String,
    output_file: PathBuf,
    running: Option<Running>,
    pending: Option<String>,
    /// The (role, leader) the last command was asked for: the same pair twice runs once.
    last: Option<(&'static str, u32)>,
}

/// The template with `%r`, `%t`, `%l` and `%%` replaced.
pub fn expand(template: &str, role: &str, term: u64, leader: u32) -> String {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push_str(role),
            Some('t') => out.push_str(&term.to_string()),
            Some('l') => out.push_str(&leader.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl RoleHook {
    pub fn new(template: &str, output_file: PathBuf) -> RoleHook {
        RoleHook {
            template: template.to_string(),
            output_file,
            running: None,
            pending: None,
            last: None,
        }
    }

    pub fn set_template(&mut self, template: &str) {
        self.template = template.to_string();
    }

    /// Notes the current role; queues the command when the role or the leader changed.
    pub fn observe(&mut self, role: &'static str, term: u64, leader: u32) {
        if self.template.trim().is_empty() || self.last == Some((role, leader)) {
            return;
        }
        self.last = Some((role, leader));
        self.pending = Some(expand(&self.template, role, term, leader));
    }

    /// Starts the pending command when none runs; reaps or kills the running one.
    pub fn poll(&mut self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        if let Some(mut run) = self.running.take() {
            match run.child.try_wait() {
                Ok(Some(status)) => {
                    outcomes.push(Outcome::Finished(run.command, status, self.read_output()))
                }
                Ok(None) if run.started.elapsed() > TIMEOUT => {
                    let _ = run.child.kill();
                    let _ = run.child.wait();
                    outcomes.push(Outcome::TimedOut(run.command));
                }
                Ok(None) => self.running = Some(run),
                Err(e) => outcomes.push(Outcome::Lost(run.command, e)),
            }
        }
        if self.running.is_none() {
            if let Some(command) = self.pending.take() {
                match self.spawn(&command) {
                    Ok(child) => {
                        outcomes.push(Outcome::Started(command.clone()));
                        self.running = Some(Running {
                            child,
                            command,
                            started: Instant::now(),
                        });
                    }
                    Err(e) => outcomes.push(Outcome::CouldNotStart(command, e)),
                }
            }
        }
        outcomes
    }

    fn spawn(&self, command: &str) -> std::io::Result<Child> {
        let out = File::create(&self.output_file)?;
        Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
    }

    fn read_output(&self) -> String {
        let mut text = String::new();
        if let Ok(f) = File::open(&self.output_file) {
            let _ = f.take(LOGGED_OUTPUT).read_to_string(&mut text);
        }
        text.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn placeholders_are_replaced() {
        assert_eq!(
            expand("/usr/local/bin/vip %r %t %l", "leader", 7, 2),
            "/usr/local/bin/vip leader 7 2"
        );
        assert_eq!(
            expand("echo 100%% %x %", "follower", 1, 3),
            "echo 100% %x %"
        );
    }
}
