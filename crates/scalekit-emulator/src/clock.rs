//! The injected clock: unix seconds, from the system, the system plus an offset that the control
//! API moves (`POST /_emulator/clock/advance` and `/rewind`), or moved by hand in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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

    /// Moves the time back by `seconds` (so that a token a real flow issued is already past its
    /// lifetime by the wall clock). Clocks that follow the system time exactly refuse.
    fn rewind(&self, seconds: u64) -> Result<(), ClockError> {
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
    /// The time would move before the unix epoch.
    #[error("rewinding by {seconds} seconds would move the clock before 1970")]
    BeforeEpoch {
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

/// Subtracts `seconds` from `value` unless that goes below 0.
fn checked_rewind(value: &AtomicU64, seconds: u64) -> Result<(), ClockError> {
    value
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
            current.checked_sub(seconds)
        })
        .map(drop)
        .map_err(|_| ClockError::BeforeEpoch { seconds })
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

    fn rewind(&self, seconds: u64) -> Result<(), ClockError> {
        checked_rewind(&self.seconds, seconds)
    }
}

/// The system time plus a signed offset: the running emulator's clock, so that the control API
/// can expire a login request, a code or a token during a test (advance), or make a token just
/// issued look old by the wall clock (rewind), while time otherwise flows as usual. Clones share
/// the offset.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    offset: Arc<AtomicI64>,
}

impl OffsetClock {
    /// A clock at the system time (offset 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// How far ahead of the system time this clock is, in seconds (negative: behind).
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::SeqCst)
    }

    /// Moves the offset by `step` seconds unless the offset would leave `i64` or the time
    /// (system time plus offset) would leave `0..=u64::MAX`; checked against the current system
    /// time, so that `now` does not saturate. Returns whether it moved.
    fn shift(&self, step: i128) -> bool {
        let system = i128::from(system_now());
        self.offset
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                let offset = i128::from(current) + step;
                let now = system + offset;
                if now < 0 || now > i128::from(u64::MAX) {
                    return None;
                }
                i64::try_from(offset).ok()
            })
            .is_ok()
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> u64 {
        let now = i128::from(system_now()) + i128::from(self.offset());
        // `shift` keeps the time in range when it moves; only a system clock set far back
        // could take it out again, and then the nearest representable second is the answer.
        u64::try_from(now.max(0)).unwrap_or(u64::MAX)
    }

    fn advance(&self, seconds: u64) -> Result<(), ClockError> {
        if self.shift(i128::from(seconds)) {
            Ok(())
        } else {
            Err(ClockError::Overflow { seconds })
        }
    }

    fn rewind(&self, seconds: u64) -> Result<(), ClockError> {
        if self.shift(-i128::from(seconds)) {
            Ok(())
        } else {
            Err(ClockError::BeforeEpoch { seconds })
        }
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
        assert_eq!(SystemClock.rewind(1), Err(ClockError::Fixed));
    }

    #[test]
    fn a_manual_clock_rewinds_through_the_trait_and_refuses_to_pass_the_epoch() {
        let clock = ManualClock::at(100);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        assert_eq!(shared.rewind(40), Ok(()));
        assert_eq!(clock.seconds(), 60);
        assert_eq!(
            shared.rewind(61),
            Err(ClockError::BeforeEpoch { seconds: 61 })
        );
        assert_eq!(clock.seconds(), 60);
        assert_eq!(shared.rewind(60), Ok(()));
        assert_eq!(clock.seconds(), 0);
    }

    #[test]
    fn an_offset_clock_rewinds_behind_the_system_time_and_advances_back() {
        let clock = OffsetClock::new();
        let before = system_now();
        assert_eq!(clock.rewind(7_200), Ok(()));
        assert_eq!(clock.offset(), -7_200);
        let now = clock.now();
        assert!(
            now + 7_200 >= before && now + 7_200 <= system_now(),
            "{now}"
        );
        assert_eq!(clock.advance(7_200), Ok(()));
        assert_eq!(clock.offset(), 0);
        assert_eq!(
            clock.rewind(u64::MAX),
            Err(ClockError::BeforeEpoch { seconds: u64::MAX })
        );
        let past_the_epoch = system_now() + 10;
        assert_eq!(
            clock.rewind(past_the_epoch),
            Err(ClockError::BeforeEpoch {
                seconds: past_the_epoch
            })
        );
        assert_eq!(clock.offset(), 0);
    }

    #[test]
    fn an_offset_clock_refuses_an_offset_it_cannot_hold() {
        let clock = OffsetClock::new();
        // `now` would fit a u64, but the offset would not fit an i64.
        let step = u64::try_from(i64::MAX).unwrap_or(u64::MAX) + 1;
        assert_eq!(
            clock.advance(step),
            Err(ClockError::Overflow { seconds: step })
        );
        assert_eq!(clock.offset(), 0);
    }
}
