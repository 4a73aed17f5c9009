//! The injected clock: unix seconds, from the system or moved by hand in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" in unix seconds.
pub trait Clock: Send + Sync + 'static {
    /// The current time in unix seconds.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        system_now()
    }
}

fn system_now() -> u64 {
    // A clock before 1970 is a broken machine; 0 keeps every expiry check conservative.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// A clock moved by hand. Clones share the same time, so a test keeps one handle and the
/// emulator another.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    seconds: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock starting at `seconds`.
    pub fn at(seconds: u64) -> Self {
        Self {
            seconds: Arc::new(AtomicU64::new(seconds)),
        }
    }

    /// A manual clock starting at the system time (tokens stay valid for real-world verifiers).
    pub fn now() -> Self {
        Self::at(system_now())
    }

    /// The current time in unix seconds (the same as `Clock::now`; this name does not clash with
    /// the `ManualClock::now` constructor).
    pub fn seconds(&self) -> u64 {
        self.seconds.load(Ordering::SeqCst)
    }

    /// Sets the time.
    pub fn set(&self, seconds: u64) {
        self.seconds.store(seconds, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, seconds: u64) {
        self.seconds.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.seconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_of_a_manual_clock_share_the_time() {
        let clock = ManualClock::at(100);
        let handle = clock.clone();
        handle.advance(5);
        assert_eq!(clock.now(), 105);
        clock.set(7);
        assert_eq!(handle.now(), 7);
    }
}
