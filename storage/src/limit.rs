//! Token buckets: the bandwidth cap (`workerMaxThroughput(KB/s)`) shared by
//! every transfer of an executor, and the requests-per-second cap.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket refilled at `rate` tokens per second, holding at most one
/// second's worth (so an idle period does not allow a long burst).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` tokens per second; must be positive.
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter {
            rate,
            state: Mutex::new((rate.min(1.0), Instant::now())),
        }
    }

    /// How long the caller must wait before taking `n` tokens; takes them
    /// now (the balance may go negative, which later callers wait out), so
    /// concurrent callers are served in turn and the long-run rate holds.
    fn reserve(&self, n: f64) -> Duration {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = *st;
        let refilled = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        let left = refilled - n;
        *st = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }

    /// Waits until `n` tokens are available and takes them.
    pub async fn acquire(&self, n: u64) {
        let wait = self.reserve(n as f64);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Takes `n` bytes from an optional limiter in slices, so one large read
/// does not stall every other transfer for its whole duration.
pub async fn throttle(limiter: Option<&RateLimiter>, n: u64) {
    if let Some(l) = limiter {
        let mut left = n;
        while left > 0 {
            let step = left.min(256 * 1024);
            l.acquire(step).await;
            left -= step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate() {
        let l = RateLimiter::new(1000.0);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            l.acquire(500).await;
        }
        // 5000 tokens at 1000/s, starting from a balance of at most 1 token.
        let took = start.elapsed().as_secs_f64();
        assert!((4.9..5.1).contains(&took), "{took}");
    }
}
