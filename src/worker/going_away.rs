//! The worker learns that its PostgreSQL is gone or going, and leaves in a few milliseconds
//! without waiting on anything that can block:
//!
//! - the postmaster died (SIGKILL, OOM killer): the postmaster-alive pipe (PostgreSQL's
//!   `postmaster_alive_fds`) reads end-of-file, and wakes the event loop;
//! - the postmaster orders every child out at once with SIGQUIT: a crash-restart cycle (a
//!   backend crashed, or PANICked), or `pg_ctl stop -m immediate`. PostgreSQL's own handler
//!   would `_exit` on the spot; ours closes the lease gate, wakes the loop through a pipe, and
//!   lets the loop hand over before it `_exit`s.
//!
//! In order: the lease gate is closed (sessions can no longer answer true, nor a commit rely on
//! the lease), the role history records that the lease ended, then the core departs: a leader
//! sends TimeoutNow to the most caught-up voter that may lead, a follower tells the leader it is
//! leaving. No LWLock (a killed backend may hold one), no logging until the datagrams have left,
//! an fsync only when the core demands one before a message. A handover that cannot finish
//! within `BUDGET` is abandoned: the others fall back to the promise, as after a silent crash.

use super::Node;
use crate::clock::boottime_now;
use mio::unix::SourceFd;
use mio::{Events, Interest, Registry, Token};
use pg_leader_raft::{Body, Departure, Duration, Message};
use pgrx::pg_sys;
use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The longest a departing worker spends handing over before it just goes.
pub(super) const BUDGET: Duration = Duration(5_000);

// Below `http::LISTENER`, so the health check never takes these for its connections.
const WAKE: Token = Token(1);
const POSTMASTER: Token = Token(2);

/// The write end of the self-pipe the SIGQUIT handler wakes the loop with; -1 until installed.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// SIGQUIT arrived.
static QUIT: AtomicBool = AtomicBool::new(false);
/// The event loop runs and will see the flag; before that, SIGQUIT exits at once.
static LOOP_RUNNING: AtomicBool = AtomicBool::new(false);

/// Why the worker leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// SIGQUIT: a crash-restart cycle or an immediate shutdown.
    CrashExit,
    /// The postmaster is gone.
    PostmasterDied,
}

impl Reason {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Reason::CrashExit => "postgres exiting at once",
            Reason::PostmasterDied => "postmaster died",
        }
    }
}

/// The worker's two alarms: the self-pipe and the postmaster-alive pipe.
#[derive(Clone, Copy, Debug)]
pub(super) struct Watch {
    wake_read: RawFd,
    postmaster: RawFd,
}

/// SIGQUIT: everything here is async-signal-safe (atomics, write, _exit).
extern "C" fn on_sigquit(_signal: libc::c_int) {
    crate::lease_gate::close();
    // A second SIGQUIT, or one before the loop runs: leave at once, as PostgreSQL's own
    // handler (SignalHandlerForCrashExit) does.
    if !LOOP_RUNNING.load(Ordering::SeqCst) || QUIT.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(2) };
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: errno is thread-local and restored; write to a non-blocking pipe is
        // async-signal-safe, and a full pipe already holds a wake-up.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, [1u8].as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

impl Watch {
    /// Installs the SIGQUIT handler and the self-pipe; called once, at the worker's start.
    pub(super) fn install() -> std::io::Result<Watch> {
        crate::lease_gate::attach();
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        WAKE_FD.store(fds[1], Ordering::SeqCst);
        // SAFETY: a plain sigaction with a handler that only does async-signal-safe work;
        // SA_RESTART is left out so that the wait returns at once.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigquit as extern "C" fn(libc::c_int) as usize;
            libc::sigfillset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGQUIT, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Watch {
            wake_read: fds[0],
            // SAFETY: set by the postmaster before it forked us, read-only afterwards.
            postmaster: unsafe {
                pg_sys::postmaster_alive_fds[pg_sys::POSTMASTER_FD_WATCH as usize]
            },
        })
    }

    /// Adds both pipes to the worker's event loop.
    pub(super) fn register(&self, registry: &Registry) -> std::io::Result<()> {
        registry.register(&mut SourceFd(&self.wake_read), WAKE, Interest::READABLE)?;
        if self.postmaster >= 0 {
            registry.register(
                &mut SourceFd(&self.postmaster),
                POSTMASTER,
                Interest::READABLE,
            )?;
        }
        Ok(())
    }

    /// From now on SIGQUIT waits for the loop.
    pub(super) fn loop_running(&self) {
        LOOP_RUNNING.store(true, Ordering::SeqCst);
    }

    /// Why the worker must leave now, if it must.
    pub(super) fn reason(&self) -> Option<Reason> {
        if QUIT.load(Ordering::SeqCst) {
            return Some(Reason::CrashExit);
        }
        (!self.postmaster_alive()).then_some(Reason::PostmasterDied)
    }

    /// The postmaster holds the pipe's only write end: end-of-file (or a hang-up) means it is
    /// gone. `poll` with no wait neither blocks nor consumes anything.
    fn postmaster_alive(&self) -> bool {
        if self.postmaster < 0 {
            return true;
        }
        let mut fd = libc::pollfd {
            fd: self.postmaster,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, no wait.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        !(ready > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
    }
}

/// How the departure went, for the log line written once everything has left.
struct Outcome {
    departure: Departure,
    timeout_now_sent: bool,
    took: Duration,
}

impl Node {
    /// Closes the lease gate, records the lease's end, departs (see the module documentation),
    /// then logs what happened. The caller exits right after.
    pub(super) fn leave(&mut self, reason: Reason) {
        crate::lease_gate::close();
        let start = boottime_now();
        let status = self.raft.status();
        if status.lease_deadline.is_some() {
            self.history.lease_given_up(start, &status, reason.as_str());
        }
        let departure = self.raft.depart(start);
        let mut timeout_now_sent = self.send_quietly();
        if let Departure::CatchingUp(_) = departure {
            timeout_now_sent = self.finish_handover(start + BUDGET);
        }
        let outcome = Outcome {
            departure,
            timeout_now_sent,
            took: boottime_now().saturating_since(start),
        };
        log_departure(self.raft.id().0, reason, &outcome);
    }

    /// The Ready's durable part (only when there is one), then its messages; nothing
    /// published. Returns true when TimeoutNow left.
    fn send_quietly(&mut self) -> bool {
        let ready = self.raft.take_ready();
        if self.storage.save(&ready).is_err() {
            // Nothing that depends on it may leave.
            return false;
        }
        self.send(&ready);
        ready.messages.iter().any(is_timeout_now)
    }

    /// Waits, until `deadline` at the latest, for the target to catch up; TimeoutNow leaves
    /// as soon as it has.
    fn finish_handover(&mut self, deadline: pg_leader_raft::Instant) -> bool {
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; pg_leader_wire::MAX_DATAGRAM + 1];
        loop {
            let now = boottime_now();
            if now >= deadline {
                return false;
            }
            let wait = deadline.saturating_since(now);
            match self.poll.poll(
                &mut events,
                Some(std::time::Duration::from_micros(wait.as_micros())),
            ) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
            self.receive_each(&mut buf, |node, datagram, from| {
                node.admit(datagram, from);
            });
            let now = boottime_now();
            if self.raft.next_deadline() <= now {
                self.raft.tick(now);
            }
            if self.send_quietly() {
                return true;
            }
        }
    }
}

fn is_timeout_now(msg: &Message) -> bool {
    msg.body == Body::TimeoutNow
}

fn log_departure(me: u32, reason: Reason, outcome: &Outcome) {
    let us = outcome.took.as_micros();
    match outcome.departure {
        Departure::HandedOver(target) | Departure::CatchingUp(target) if outcome.timeout_now_sent => {
            pgrx::log!(
                "pg_leader: node {me} leaving ({}): lease given up, leadership handed to node {target} in {us} us",
                reason.as_str()
            )
        }
        Departure::CatchingUp(target) => pgrx::log!(
            "pg_leader: node {me} leaving ({}): lease given up; node {target} did not catch up within {} us, the others will elect",
            reason.as_str(),
            BUDGET.as_micros()
        ),
        Departure::Announced(leader) => pgrx::log!(
            "pg_leader: node {me} leaving ({}): told node {leader}, the leader",
            reason.as_str()
        ),
        _ => pgrx::log!("pg_leader: node {me} leaving ({})", reason.as_str()),
    }
}
