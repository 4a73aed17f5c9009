//! The injected clock: unix seconds, from the system, the system plus an offset that the control
//! API moves (`POST /_emulator/clock/advance`), or moved by hand in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" in unix seconds.
pub trait Clock: Send + Sync + 'static {
    /// The current time in unix seconds.
    fn now(&self) -> u64;

    /// Moves the time forward by `seconds`. Clocks that follow the system time exactly refuse.
    fn advance(&self, seconds: u64) -> Result<(), ClockError> {
        let _ = seconds;
        Err(ClockError::Fixed)
    }
}

/// Why a clock could not be moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The clock is the system clock, which the emulator does not move.
    #[error("this clock follows the system time and cannot be moved")]
    Fixed,
    /// The time would pass the largest representable unix second.
    #[error("advancing by {seconds} seconds would overflow the clock")]
    Overflow {
        /// The refused step.
        seconds: u64,
    },
}

/// Adds `seconds` to `value` unless that overflows.
fn checked_advance(value: &AtomicU64, seconds: u64) -> Result<(), ClockError> {
    value
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
            current.checked_add(seconds)
        })
        .map(drop)
        .map_err(|_| ClockError::Overflow { seconds })
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

    fn advance(&self, seconds: u64) -> Result<(), ClockError> {
        checked_advance(&self.seconds, seconds)
    }
}

/// The system time plus an offset that only grows: the running emulator's clock, so that the
/// control API can expire a login request, a code or a token during a test while time otherwise
/// flows as usual. Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    offset: Arc<AtomicU64>,
}

impl OffsetClock {
    /// A clock at the system time (offset 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// How far ahead of the system time this clock is, in seconds.
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::SeqCst)
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> u64 {
        system_now().saturating_add(self.offset())
    }

    fn advance(&self, seconds: u64) -> Result<(), ClockError> {
        // Checked against the current time too, so that `now` never saturates.
        if system_now()
            .saturating_add(self.offset())
            .checked_add(seconds)
            .is_none()
        {
            return Err(ClockError::Overflow { seconds });
        }
        checked_advance(&self.offset, seconds)
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

    #[test]
    fn a_manual_clock_advances_through_the_trait_and_refuses_to_overflow() {
        let clock = ManualClock::at(100);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        assert_eq!(shared.advance(20), Ok(()));
        assert_eq!(clock.seconds(), 120);
        assert_eq!(
            shared.advance(u64::MAX),
            Err(ClockError::Overflow { seconds: u64::MAX })
        );
        assert_eq!(clock.seconds(), 120);
    }

    #[test]
    fn an_offset_clock_runs_ahead_of_the_system_time_by_what_it_was_advanced() {
        let clock = OffsetClock::new();
        let handle = clock.clone();
        let before = system_now();
        assert_eq!(handle.advance(3_600), Ok(()));
        assert_eq!(clock.offset(), 3_600);
        let now = clock.now();
        assert!(
            now >= before + 3_600 && now <= system_now() + 3_600,
            "{now}"
        );
        assert_eq!(
            clock.advance(u64::MAX),
            Err(ClockError::Overflow { seconds: u64::MAX })
        );
        assert_eq!(clock.offset(), 3_600);
    }

    #[test]
    fn the_system_clock_cannot_be_moved() {
        assert_eq!(SystemClock.advance(1), Err(ClockError::Fixed));
    }
}
