//! `fastant`'s API (`Instant`, `Atomic`) on `std::time::Instant`, without
//! the published crate's start-up TSC calibration (see README.md).

use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point in monotonic time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(std::time::Instant);

impl Instant {
    pub fn now() -> Self {
        Self(std::time::Instant::now())
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }

    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.0.checked_duration_since(earlier.0)
    }

    pub fn elapsed(&self) -> Duration {
        Self::now().duration_since(*self)
    }

    pub fn checked_add(&self, d: Duration) -> Option<Instant> {
        self.0.checked_add(d).map(Self)
    }

    pub fn checked_sub(&self, d: Duration) -> Option<Instant> {
        self.0.checked_sub(d).map(Self)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Self(self.0 + d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Self(self.0 - d)
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 -= d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.duration_since(other)
    }
}

/// The process's time origin for [`Atomic`]: instants are stored as
/// nanoseconds from it. Taken on first use, not at start-up.
fn anchor() -> std::time::Instant {
    static ANCHOR: OnceLock<std::time::Instant> = OnceLock::new();
    *ANCHOR.get_or_init(|| {
        // Back a little, so that instants taken just before the first use
        // (another thread racing it) keep their exact offset; instants from
        // before the anchor would otherwise read as the anchor.
        let now = std::time::Instant::now();
        now.checked_sub(Duration::from_secs(60)).unwrap_or(now)
    })
}

fn nanos_since_anchor(i: Instant) -> u64 {
    let nanos = i.0.saturating_duration_since(anchor()).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// An [`Instant`] that can be loaded and stored atomically.
#[derive(Debug, Default)]
pub struct Atomic(AtomicU64);

impl Atomic {
    pub fn new(i: Instant) -> Self {
        Self(AtomicU64::new(nanos_since_anchor(i)))
    }

    pub fn load(&self, order: Ordering) -> Instant {
        Instant(anchor() + Duration::from_nanos(self.0.load(order)))
    }

    pub fn store(&self, i: Instant, order: Ordering) {
        self.0.store(nanos_since_anchor(i), order);
    }

    pub fn swap(&self, i: Instant, order: Ordering) -> Instant {
        Instant(anchor() + Duration::from_nanos(self.0.swap(nanos_since_anchor(i), order)))
    }

    pub fn into_instant(self) -> Instant {
        Instant(anchor() + Duration::from_nanos(self.0.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_round_trips_instants_to_the_nanosecond() {
        let a = Instant::now();
        let b = a + Duration::from_millis(1500);
        let at = Atomic::new(a);
        assert_eq!(at.load(Ordering::Relaxed).duration_since(a), Duration::ZERO);
        at.store(b, Ordering::Relaxed);
        let got = at.load(Ordering::Relaxed);
        assert_eq!(got.duration_since(a), Duration::from_millis(1500));
        assert_eq!(at.swap(a, Ordering::Relaxed), got);
        assert_eq!(at.into_instant().duration_since(a), Duration::ZERO);
    }

    #[test]
    fn duration_since_a_later_instant_is_zero() {
        let a = Instant::now();
        let b = a + Duration::from_secs(1);
        assert_eq!(a.duration_since(b), Duration::ZERO);
        assert_eq!(b - a, Duration::from_secs(1));
        assert!(a.checked_duration_since(b).is_none());
    }
}
