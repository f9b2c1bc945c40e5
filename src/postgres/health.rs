//! Whether this server's PostgreSQL can serve: a leader must be a working database, so a
//! server whose PostgreSQL cannot serve may not lead (the worker turns `Config::can_lead` off,
//! and a leader hands over at once). Two checks, each bounded by half the election timeout, so
//! that a sick leader is gone within one election timeout:
//!
//! - **The connection probe.** A thread of the worker connects to this server every
//!   `PROBE_INTERVAL`, half-closes its side at once and waits for the server to close the
//!   connection. The postmaster forks a backend for every connection, and only that backend
//!   reads and closes it, so a postmaster that is stopped, stuck or cannot fork does not
//!   answer. The backend reads end-of-file before the first byte of a startup packet, which
//!   PostgreSQL leaves out of its log ("If we get no data at all, don't clutter the log with a
//!   complaint", `ProcessStartupPacket`): the probe writes nothing to the server log at any
//!   setting but `log_connections`. An SSLRequest would leave lines: with `ssl = on` over TCP the
//!   server starts a TLS handshake that our close turns into "could not accept SSL connection",
//!   and connections queued behind a stopped postmaster are answered after their client left
//!   ("failed to send SSL negotiation response"). The thread makes no PostgreSQL call (pgrx
//!   allows them on the main thread only): it learns where to connect from the main thread and
//!   reports through atomics.
//! - **The WAL stall check**, on the main thread: on a server out of recovery, WAL inserted but
//!   not flushed while the flush position stands still means WAL writes hang (a stuck disk, an
//!   I/O error retried for ever). Failing WAL writes (a full or read-only `pg_wal`) PANIC, and the
//!   crash-restart that follows is `worker::going_away`'s. A healthy server leaves at most its
//!   last, partial page unflushed (`wal_pending`), and its WAL writer needs up to
//!   `wal_writer_delay` for the rest: the check allows two.

use crate::clock::boottime_now;
use pg_leader_raft::{Duration, Instant};
use pgrx::pg_sys;
use std::ffi::CStr;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How often the probe connects: a fork of the postmaster each time.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(150);
/// The longest one probe waits on its connection before it opens another. Each probe that a
/// stopped postmaster leaves unanswered waits in its listen queue, so they are few.
const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
/// A probe that never got an answer since the worker started says so after this long: it may
/// be unable to reach this server at all (see `Health::check`).
const NEVER_ANSWERED_WARNING: Duration = Duration(10_000_000);

/// `XLOG_BLCKSZ`.
const WAL_PAGE: u64 = pg_sys::XLOG_BLCKSZ as u64;

/// Why this server's PostgreSQL cannot serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sickness {
    /// The connection probe got no answer for this long.
    NoAnswer { silent: Duration },
    /// WAL is inserted up to `written`, but the flush position stayed at `flushed` this long.
    WalStalled {
        flushed: u64,
        written: u64,
        stuck: Duration,
    },
}

impl Sickness {
    fn same_kind(&self, other: &Sickness) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A WAL position as PostgreSQL prints it.
fn lsn(position: u64) -> String {
    format!("{:X}/{:X}", position >> 32, position as u32)
}

impl fmt::Display for Sickness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sickness::NoAnswer { silent } => write!(
                f,
                "no answer from this server's PostgreSQL for {} ms",
                silent.as_millis()
            ),
            Sickness::WalStalled {
                flushed,
                written,
                stuck,
            } => write!(
                f,
                "WAL flush stuck at {} for {} ms while {} is written",
                lsn(*flushed),
                stuck.as_millis(),
                lsn(*written)
            ),
        }
    }
}

/// What changed in `Health::check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Sick(Sickness),
    Healthy { was: Sickness },
}

/// Where the probe connects: the first Unix socket directory, else the first listen address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTarget {
    Unix(std::path::PathBuf),
    /// A Linux abstract socket (`unix_socket_directories = '@name'`).
    Abstract(String),
    /// Host and port, resolved by the probe thread.
    Tcp(String, u16),
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Unix(path) => write!(f, "{}", path.display()),
            ProbeTarget::Abstract(name) => write!(f, "@{name}"),
            ProbeTarget::Tcp(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// The first entry of a PostgreSQL list setting (comma-separated, entries optionally
/// double-quoted).
fn first_entry(list: &str) -> Option<String> {
    list.split(',')
        .map(|e| e.trim().trim_matches('"').trim())
        .find(|e| !e.is_empty())
        .map(str::to_string)
}

/// Where to reach this server, from `unix_socket_directories`, `listen_addresses` and `port`;
/// None when it listens nowhere the probe can connect.
pub fn probe_target(socket_dirs: &str, listen_addresses: &str, port: u16) -> Option<ProbeTarget> {
    if let Some(dir) = first_entry(socket_dirs) {
        let socket = format!(".s.PGSQL.{port}");
        return Some(match dir.strip_prefix('@') {
            Some(name) => ProbeTarget::Abstract(format!("{name}/{socket}")),
            None => ProbeTarget::Unix(std::path::Path::new(&dir).join(socket)),
        });
    }
    let host = match first_entry(listen_addresses)?.as_str() {
        "*" | "0.0.0.0" | "localhost" => "127.0.0.1".to_string(),
        "::" => "::1".to_string(),
        other => other.to_string(),
    };
    Some(ProbeTarget::Tcp(host, port))
}

/// What the probe thread tells the main thread.
#[derive(Default)]
struct ProbeState {
    /// CLOCK_BOOTTIME microseconds at which the first probe since the last answer left; 0 while
    /// the last probe was answered.
    unanswered_since: AtomicU64,
    /// A probe was answered since the worker started.
    answered_once: AtomicBool,
}

/// Connects, half-closes, and waits up to `patience` for the server to close its side: true
/// when it did (a backend was forked and read our end-of-file).
fn probe_once(target: &ProbeTarget, patience: std::time::Duration) -> bool {
    let answered = |result: std::io::Result<usize>| match result {
        Ok(_) => true,
        // Closed with a reset: a backend was there to close it.
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    };
    let unix = |address: std::io::Result<UnixAddr>| -> std::io::Result<bool> {
        // Non-blocking: a full listen queue (a stopped postmaster) answers EAGAIN at once
        // instead of blocking the probe.
        let stream = mio::net::UnixStream::connect_addr(&address?)?;
        // SAFETY: the descriptor is moved out of the mio stream, which no longer owns it.
        let mut stream = unsafe { UnixStream::from_raw_fd(stream.into_raw_fd()) };
        stream.set_nonblocking(false)?;
        stream.shutdown(Shutdown::Write)?;
        stream.set_read_timeout(Some(patience))?;
        Ok(answered(stream.read(&mut [0u8; 64])))
    };
    let result = match target {
        ProbeTarget::Unix(path) => unix(UnixAddr::from_pathname(path)),
        ProbeTarget::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            unix(UnixAddr::from_abstract_name(name.as_bytes()))
        }
        ProbeTarget::Tcp(host, port) => (|| {
            let address: SocketAddr = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or(ErrorKind::NotFound)?;
            let mut stream = TcpStream::connect_timeout(&address, patience)?;
            stream.shutdown(Shutdown::Write)?;
            stream.set_read_timeout(Some(patience))?;
            Ok(answered(stream.read(&mut [0u8; 64])))
        })(),
    };
    result.unwrap_or(false)
}

/// The probe thread's loop; it runs as long as the worker.
fn run_probe(target: ProbeTarget, state: Arc<ProbeState>) {
    loop {
        let sent = boottime_now();
        let _ = state.unanswered_since.compare_exchange(
            0,
            sent.as_micros(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        if probe_once(&target, PROBE_PATIENCE) {
            state.answered_once.store(true, Ordering::SeqCst);
            state.unanswered_since.store(0, Ordering::SeqCst);
        }
        let spent =
            std::time::Duration::from_micros(boottime_now().saturating_since(sent).as_micros());
        std::thread::sleep(PROBE_INTERVAL.saturating_sub(spent));
    }
}

/// Runs `spawn` with every signal blocked, so that the thread it starts inherits a mask that
/// blocks them all: the worker's signals (SIGTERM, SIGHUP, SIGINT, SIGQUIT) must reach the main
/// thread, whose wait they interrupt.
fn with_signals_blocked<T>(spawn: impl FnOnce() -> T) -> T {
    // SAFETY: pthread_sigmask only reads and writes the sets we pass; the previous mask is put
    // back before returning.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let spawned = spawn();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}

/// The probe's verdict: sick once a probe has gone unanswered for longer than `bound`.
fn probe_silence(now: Instant, unanswered_since_us: u64, bound: Duration) -> Option<Sickness> {
    if unanswered_since_us == 0 {
        return None;
    }
    let silent = now.saturating_since(Instant::from_micros(unanswered_since_us));
    (silent > bound).then_some(Sickness::NoAnswer { silent })
}

/// Whether more WAL is inserted than a healthy server leaves unflushed. Its WAL writer flushes
/// every complete page within `wal_writer_delay`, and commits flush their own records; only the
/// last, partial page may wait for the next record (the insert position of an idle server even
/// points past the next page's header). More than two pages behind is pending WAL. (Asking the
/// WAL writer to flush up to the insert position is no way to find out: that position is
/// reserved, not necessarily copied into the buffers yet, and a flush request beyond what is
/// copied makes the WAL writer PANIC.)
fn wal_pending(written: u64, flushed: u64) -> bool {
    written > flushed && written - flushed > 2 * WAL_PAGE
}

/// Watches the flush position while WAL is pending.
#[derive(Default, Debug)]
pub struct WalStall {
    /// Since when the flush position has stood at this value with WAL pending.
    since: Option<(Instant, u64)>,
}

impl WalStall {
    /// Sick when WAL is pending and the flush position has not moved for longer than `bound`.
    pub fn observe(
        &mut self,
        now: Instant,
        written: u64,
        flushed: u64,
        bound: Duration,
    ) -> Option<Sickness> {
        if !wal_pending(written, flushed) {
            self.since = None;
            return None;
        }
        match self.since {
            Some((at, stood)) if stood == flushed => {
                let stuck = now.saturating_since(at);
                (stuck > bound).then_some(Sickness::WalStalled {
                    flushed,
                    written,
                    stuck,
                })
            }
            _ => {
                self.since = Some((now, flushed));
                None
            }
        }
    }

    fn reset(&mut self) {
        self.since = None;
    }
}

/// The health of this server's PostgreSQL, as the worker sees it.
pub struct Health {
    /// None when the server listens nowhere the probe can reach.
    probe: Option<Arc<ProbeState>>,
    target: Option<ProbeTarget>,
    started: Instant,
    /// The previous `check`, and since when the worker has run without a gap longer than the
    /// bound: evidence gathered while the whole process was stopped (its worker paused, the
    /// machine suspended) is no evidence.
    last_check: Option<Instant>,
    awake_since: Instant,
    warned_never_answered: bool,
    wal: WalStall,
    current: Option<Sickness>,
}

/// A string setting read from PostgreSQL's own variable.
///
/// SAFETY: `value` is NULL or a NUL-terminated string owned by the GUC machinery.
unsafe fn guc_text(value: *const std::ffi::c_char) -> String {
    if value.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned()
    }
}

/// `wal_writer_delay`, in milliseconds (200 when it cannot be read).
fn wal_writer_delay_ms() -> u64 {
    // SAFETY: main thread; GetConfigOption returns NULL or a string valid until the next call.
    let text = unsafe {
        guc_text(pg_sys::GetConfigOption(
            c"wal_writer_delay".as_ptr(),
            true,
            false,
        ))
    };
    text.parse().unwrap_or(200)
}

impl Health {
    /// Reads where this server listens and starts the probe thread. Main thread only.
    pub fn start() -> Health {
        // SAFETY: plain GUC variables of the postmaster, inherited by this process and read on
        // its main thread.
        let (dirs, listen, port) = unsafe {
            (
                guc_text(pg_sys::Unix_socket_directories),
                guc_text(pg_sys::ListenAddresses),
                pg_sys::PostPortNumber,
            )
        };
        let target = probe_target(&dirs, &listen, port as u16);
        let probe = target.clone().and_then(|target| {
            let state = Arc::new(ProbeState::default());
            let shared = state.clone();
            let spawned = with_signals_blocked(|| {
                std::thread::Builder::new()
                    .name("pg_leader probe".into())
                    .spawn(move || run_probe(target, shared))
            });
            spawned
                .map_err(|e| pgrx::warning!("pg_leader: could not start the health probe: {e}"))
                .ok()
                .map(|_| state)
        });
        if target.is_none() {
            pgrx::warning!(
                "pg_leader: this server listens on no socket the health probe can reach; only WAL stalls are detected"
            );
        }
        Health {
            probe,
            target,
            started: boottime_now(),
            last_check: None,
            awake_since: boottime_now(),
            warned_never_answered: false,
            wal: WalStall::default(),
            current: None,
        }
    }

    /// Why this server's PostgreSQL cannot serve, if it cannot.
    pub fn sickness(&self) -> Option<&Sickness> {
        self.current.as_ref()
    }

    /// Whether the probe says this server accepts connections: it was answered since the worker
    /// started and has not been silent for longer than the bound since (as of the last `check`).
    /// A server the probe cannot reach is taken at its word, as for leading.
    pub fn accepts_connections(&self) -> bool {
        let answered = self
            .probe
            .as_ref()
            .is_none_or(|p| p.answered_once.load(Ordering::SeqCst));
        answered && !matches!(self.current, Some(Sickness::NoAnswer { .. }))
    }

    /// Takes both checks' readings; `bound` is half the election timeout. Main thread only.
    pub fn check(&mut self, now: Instant, bound: Duration) -> Option<Change> {
        self.note_turn(now, bound);
        self.warn_if_never_answered(now);
        let found = self.probe_verdict(now, bound);
        let wal = self.wal_verdict(now, bound);
        self.settle(found.or(wal))
    }

    /// A turn that comes longer than `bound` after the previous one means the worker itself did
    /// not run meanwhile (stopped, or the machine suspended), and neither did its probe thread:
    /// silence and stalls count again from now.
    fn note_turn(&mut self, now: Instant, bound: Duration) {
        if self
            .last_check
            .is_some_and(|last| now.saturating_since(last) > bound)
        {
            self.awake_since = now;
            self.wal.reset();
        }
        self.last_check = Some(now);
    }

    /// A probe that was never answered may be unable to reach this server at all: said once,
    /// with the target.
    fn warn_if_never_answered(&mut self, now: Instant) {
        let Some(probe) = self.probe.as_ref() else {
            return;
        };
        if !probe.answered_once.load(Ordering::SeqCst)
            && !self.warned_never_answered
            && now.saturating_since(self.started) > NEVER_ANSWERED_WARNING
        {
            self.warned_never_answered = true;
            pgrx::warning!(
                "pg_leader: the health probe got no answer from {} since the worker started; it detects nothing until it does",
                self.target.as_ref().map_or(String::new(), |t| t.to_string())
            );
        }
    }

    fn probe_verdict(&self, now: Instant, bound: Duration) -> Option<Sickness> {
        let probe = self.probe.as_ref()?;
        // Silence counts only once the probe was answered: before that it may be our own
        // (a listen address the probe cannot reach), and a server that never leads because of
        // it would be worse than a probe that detects nothing.
        if !probe.answered_once.load(Ordering::SeqCst) {
            return None;
        }
        let since = probe.unanswered_since.load(Ordering::SeqCst);
        // 0: answered.
        let counted_from = if since == 0 {
            0
        } else {
            since.max(self.awake_since.as_micros())
        };
        probe_silence(now, counted_from, bound)
    }

    fn wal_verdict(&mut self, now: Instant, bound: Duration) -> Option<Sickness> {
        // SAFETY: these read XLogCtl under its spinlocks, as any process attached to shared
        // memory may.
        unsafe {
            if pg_sys::RecoveryInProgress() {
                self.wal.reset();
                return None;
            }
            let written = pg_sys::GetXLogInsertRecPtr();
            let flushed = pg_sys::GetFlushRecPtr(std::ptr::null_mut());
            if !wal_pending(written, flushed) {
                self.wal.reset();
                return None;
            }
            let bound = bound.max(Duration::from_millis(2 * wal_writer_delay_ms()));
            self.wal.observe(now, written, flushed, bound)
        }
    }

    /// Keeps the sickness as first found (its text says how long it had lasted then) until it
    /// goes or changes kind.
    fn settle(&mut self, found: Option<Sickness>) -> Option<Change> {
        match (self.current.take(), found) {
            (None, None) => None,
            (Some(was), None) => Some(Change::Healthy { was }),
            (Some(current), Some(found)) if current.same_kind(&found) => {
                self.current = Some(current);
                None
            }
            (_, Some(found)) => {
                self.current = Some(found.clone());
                Some(Change::Sick(found))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    const BOUND: Duration = Duration(500_000);

    fn at(ms: u64) -> Instant {
        Instant::from_micros(1_000_000_000 + ms * 1000)
    }

    #[test]
    fn sickness_names_its_cause() {
        let silent = Sickness::NoAnswer {
            silent: Duration::from_millis(512),
        };
        assert_eq!(
            silent.to_string(),
            "no answer from this server's PostgreSQL for 512 ms"
        );
        let stalled = Sickness::WalStalled {
            flushed: 0x3000060,
            written: 0x3001000,
            stuck: Duration::from_millis(600),
        };
        assert_eq!(
            stalled.to_string(),
            "WAL flush stuck at 0/3000060 for 600 ms while 0/3001000 is written"
        );
        assert_eq!(lsn(0x1_0000_00A0), "1/A0");
    }

    #[test]
    fn probe_goes_to_the_first_socket_directory_else_the_first_listen_address() {
        assert_eq!(
            probe_target("/tmp/a, /var/run/b", "*", 5432),
            Some(ProbeTarget::Unix("/tmp/a/.s.PGSQL.5432".into()))
        );
        assert_eq!(
            probe_target("\"/tmp/with space\"", "", 5433),
            Some(ProbeTarget::Unix("/tmp/with space/.s.PGSQL.5433".into()))
        );
        assert_eq!(
            probe_target("@pg", "", 5432),
            Some(ProbeTarget::Abstract("pg/.s.PGSQL.5432".into()))
        );
        assert_eq!(
            probe_target("", "*", 5432),
            Some(ProbeTarget::Tcp("127.0.0.1".into(), 5432))
        );
        assert_eq!(
            probe_target(" ", "10.0.0.7, localhost", 5432),
            Some(ProbeTarget::Tcp("10.0.0.7".into(), 5432))
        );
        assert_eq!(
            probe_target("", "::", 5432),
            Some(ProbeTarget::Tcp("::1".into(), 5432))
        );
        assert_eq!(probe_target("", "", 5432), None);
    }

    #[test]
    fn a_probe_is_sick_only_once_unanswered_for_longer_than_the_bound() {
        assert_eq!(probe_silence(at(10_000), 0, BOUND), None);
        let sent = at(1000).as_micros();
        assert_eq!(probe_silence(at(1500), sent, BOUND), None);
        assert_eq!(
            probe_silence(at(1501), sent, BOUND),
            Some(Sickness::NoAnswer {
                silent: Duration::from_millis(501)
            })
        );
    }

    #[test]
    fn wal_flush_standing_still_behind_the_insert_position_is_a_stall() {
        let mut wal = WalStall::default();
        assert_eq!(wal.observe(at(0), 0x3008000, 0x3000060, BOUND), None);
        assert_eq!(wal.observe(at(500), 0x3008000, 0x3000060, BOUND), None);
        assert_eq!(
            wal.observe(at(600), 0x3008000, 0x3000060, BOUND),
            Some(Sickness::WalStalled {
                flushed: 0x3000060,
                written: 0x3008000,
                stuck: Duration::from_millis(600)
            })
        );
    }

    #[test]
    fn a_moving_flush_position_is_no_stall() {
        let mut wal = WalStall::default();
        for step in 0..20u64 {
            let flushed = 0x3000000 + step * 0x100;
            assert_eq!(
                wal.observe(at(step * 100), flushed + 0x1000, flushed, BOUND),
                None
            );
        }
    }

    #[test]
    fn nothing_pending_is_no_stall_however_long() {
        let mut wal = WalStall::default();
        assert_eq!(wal.observe(at(0), 0x3000060, 0x3000060, BOUND), None);
        assert_eq!(wal.observe(at(10_000), 0x3000060, 0x3000060, BOUND), None);
        // Caught up in between: the clock starts again.
        assert_eq!(wal.observe(at(10_100), 0x3000100, 0x3000060, BOUND), None);
        assert_eq!(wal.observe(at(10_200), 0x3000100, 0x3000100, BOUND), None);
        assert_eq!(wal.observe(at(10_300), 0x3000200, 0x3000100, BOUND), None);
        assert_eq!(wal.observe(at(10_700), 0x3000200, 0x3000100, BOUND), None);
    }

    #[test]
    fn a_partial_page_or_two_unflushed_is_nothing_pending() {
        // An idle server whose last record ended on a page boundary.
        assert!(!wal_pending(0x3002000 + 24, 0x3002000));
        assert!(!wal_pending(0x4000000 + 40, 0x4000000));
        // A partial page waiting for the next record.
        assert!(!wal_pending(0x3001ff0 + 24, 0x3001ff0));
        assert!(!wal_pending(0x3000000 + 2 * 8192, 0x3000000));
        assert!(!wal_pending(0x3000000, 0x3000060));
        // More than two pages behind.
        assert!(wal_pending(0x3000000 + 2 * 8192 + 1, 0x3000000));
    }

    fn health_at(start: Instant, probe: Option<Arc<ProbeState>>) -> Health {
        Health {
            probe,
            target: None,
            started: start,
            last_check: None,
            awake_since: start,
            warned_never_answered: false,
            wal: WalStall::default(),
            current: None,
        }
    }

    #[test]
    fn silence_while_the_worker_itself_was_stopped_does_not_count() {
        let state = Arc::new(ProbeState::default());
        state.answered_once.store(true, Ordering::SeqCst);
        let mut health = health_at(at(0), Some(state.clone()));
        health.note_turn(at(100), BOUND);
        // A probe left at 150 ms; the whole process was stopped from 160 ms to 5 s.
        state
            .unanswered_since
            .store(at(150).as_micros(), Ordering::SeqCst);
        health.note_turn(at(160), BOUND);
        health.note_turn(at(5000), BOUND);
        assert_eq!(health.probe_verdict(at(5000), BOUND), None);
        health.note_turn(at(5100), BOUND);
        assert_eq!(health.probe_verdict(at(5100), BOUND), None);
        // Still unanswered half an election timeout after the worker ran again: sick.
        health.note_turn(at(5200), BOUND);
        health.note_turn(at(5300), BOUND);
        health.note_turn(at(5400), BOUND);
        health.note_turn(at(5501), BOUND);
        assert_eq!(
            health.probe_verdict(at(5501), BOUND),
            Some(Sickness::NoAnswer {
                silent: Duration::from_millis(501)
            })
        );
    }

    #[test]
    fn silence_counts_only_after_the_first_answer() {
        let state = Arc::new(ProbeState::default());
        state
            .unanswered_since
            .store(at(0).as_micros(), Ordering::SeqCst);
        let mut health = health_at(at(0), Some(state.clone()));
        health.note_turn(at(100), BOUND);
        health.note_turn(at(200), BOUND);
        assert_eq!(health.probe_verdict(at(200), BOUND), None);
        // It answered once; the next probe (at 100 ms) is still unanswered at 700 ms.
        state.answered_once.store(true, Ordering::SeqCst);
        state
            .unanswered_since
            .store(at(100).as_micros(), Ordering::SeqCst);
        for ms in [300, 400, 500, 600, 700] {
            health.note_turn(at(ms), BOUND);
        }
        assert!(health.probe_verdict(at(700), BOUND).is_some());
    }

    #[test]
    fn health_reports_a_change_once_and_recovery_once() {
        let mut health = health_at(at(0), None);
        let silent = |ms| Sickness::NoAnswer {
            silent: Duration::from_millis(ms),
        };
        assert_eq!(health.settle(None), None);
        assert_eq!(
            health.settle(Some(silent(501))),
            Some(Change::Sick(silent(501)))
        );
        assert_eq!(health.settle(Some(silent(900))), None);
        assert_eq!(health.sickness(), Some(&silent(501)));
        assert_eq!(
            health.settle(None),
            Some(Change::Healthy { was: silent(501) })
        );
        assert_eq!(health.sickness(), None);
    }

    fn socket_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("pg_leader_probe_{name}_{}", std::process::id()))
    }

    #[test]
    fn a_server_that_closes_the_connection_answers_the_probe() {
        let path = socket_path("closes");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // As a backend: read until end-of-file, then close.
            let (mut conn, _) = listener.accept().unwrap();
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).unwrap();
            rest
        });
        let target = ProbeTarget::Unix(path.clone());
        assert!(probe_once(&target, std::time::Duration::from_secs(5)));
        assert!(server.join().unwrap().is_empty(), "the probe sends nothing");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_server_that_does_not_accept_leaves_the_probe_unanswered() {
        let path = socket_path("stopped");
        let _ = std::fs::remove_file(&path);
        // Listening but never accepting, like a stopped postmaster.
        let _listener = UnixListener::bind(&path).unwrap();
        let target = ProbeTarget::Unix(path.clone());
        let started = std::time::Instant::now();
        assert!(!probe_once(&target, std::time::Duration::from_millis(200)));
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        let _ = std::fs::remove_file(&path);
        // Nothing listens at all.
        assert!(!probe_once(&target, std::time::Duration::from_millis(200)));
    }
}
