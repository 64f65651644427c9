//! A circuit breaker per provider: after a run of failed calls the service is treated as
//! down and calls fail fast (`Unavailable`); after a pause one probe call at a time is let
//! through, and its outcome closes or re-opens the circuit.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker's state machine (shared by every call of one provider).
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

/// Why a call was not let through: the circuit is open for about this long still.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejected {
    /// Time until the next probe is allowed.
    pub(crate) retry_in: Duration,
}

/// Admission for one call attempt; report the outcome with [`Permit::success`] or
/// [`Permit::failure`]. Dropped without an outcome (the caller went away), it frees the
/// probe slot without judging the service.
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    settled: bool,
}

impl CircuitBreaker {
    /// A closed breaker opening after `threshold` consecutive failures for `open_for`.
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Arc<Self> {
        Arc::new(CircuitBreaker {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call attempt through, or says how long the circuit stays open.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(Rejected {
                        retry_in: until - now,
                    });
                }
                *state = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { probing: true } => {
                return Err(Rejected {
                    retry_in: Duration::ZERO,
                })
            }
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                true
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            settled: false,
        })
    }

    /// Records a failure outside an admitted attempt (e.g. a stream that broke mid-way).
    pub(crate) fn record_failure(&self) {
        let mut state = self.lock();
        match *state {
            State::Closed { failures } => {
                let failures = failures + 1;
                *state = if failures >= self.threshold {
                    State::Open {
                        until: Instant::now() + self.open_for,
                    }
                } else {
                    State::Closed { failures }
                };
            }
            State::HalfOpen { .. } => {
                *state = State::Open {
                    until: Instant::now() + self.open_for,
                }
            }
            State::Open { .. } => {}
        }
    }

    fn record_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// Whether calls are currently failing fast.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() < until)
    }
}

impl Permit {
    /// The service answered (any status that is not a server failure).
    pub(crate) fn success(mut self) {
        self.settled = true;
        self.breaker.record_success();
    }

    /// The service failed (connection error, timeout, 5xx).
    pub(crate) fn failure(mut self) {
        self.settled = true;
        self.breaker.record_failure();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            let mut state = self.breaker.lock();
            if matches!(*state, State::HalfOpen { probing: true }) {
                *state = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = CircuitBreaker::new(2, Duration::from_millis(0));
        b.admit().unwrap().failure();
        assert!(!b.is_open());
        b.admit().unwrap().failure();
        // open_for is zero: the next admit is the probe, a second concurrent one is rejected.
        let probe = b.admit().unwrap();
        assert!(b.admit().is_err());
        drop(probe);
        let probe = b.admit().unwrap();
        probe.success();
        assert!(b.admit().is_ok());
    }

    #[test]
    fn rejects_while_open() {
        let b = CircuitBreaker::new(1, Duration::from_secs(60));
        b.admit().unwrap().failure();
        assert!(b.is_open());
        let r = b.admit().unwrap_err();
        assert!(r.retry_in > Duration::from_secs(50));
    }
}
