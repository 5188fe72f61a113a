//! Token buckets: the bandwidth cap (`workerMaxThroughput(KB/s)`) shared by
//! every transfer of an executor, and the requests-per-second cap.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket refilled at `rate` tokens per second, holding at most one
/// second's worth (so an idle period does not allow a long burst). The rate
/// can be changed while transfers run (`ossimportctl set`, a bandwidth
/// schedule); a rate of 0 lets everything through.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` tokens per second; 0 for no limit.
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter {
            state: Mutex::new(Bucket {
                rate: rate.max(0.0),
                tokens: rate.clamp(0.0, 1.0),
                last: Instant::now(),
            }),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate now (0: none).
    pub fn rate(&self) -> f64 {
        self.bucket().rate
    }

    /// Changes the rate from now on. Tokens saved at the old rate are cut to
    /// one second of the new one, and a debt is scaled to it, so lowering
    /// the rate takes effect at once rather than after a burst.
    pub fn set_rate(&self, rate: f64) {
        let mut b = self.bucket();
        let rate = rate.max(0.0);
        if rate == b.rate {
            return;
        }
        let now = Instant::now();
        if b.rate > 0.0 {
            let refilled = b.tokens + now.duration_since(b.last).as_secs_f64() * b.rate;
            b.tokens = refilled.min(b.rate);
            if rate > 0.0 {
                b.tokens = if b.tokens > 0.0 {
                    b.tokens.min(rate)
                } else {
                    b.tokens * rate / b.rate
                };
            }
        } else {
            b.tokens = rate.min(1.0);
        }
        b.rate = rate;
        b.last = now;
    }

    /// How long the caller must wait before taking `n` tokens; takes them
    /// now (the balance may go negative, which later callers wait out), so
    /// concurrent callers are served in turn and the long-run rate holds.
    fn reserve(&self, n: f64) -> Duration {
        let mut b = self.bucket();
        if b.rate == 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let refilled = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.rate).min(b.rate);
        let left = refilled - n;
        b.tokens = left;
        b.last = now;
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / b.rate)
        }
    }

    /// [`RateLimiter::acquire`] for blocking threads (local copies).
    pub fn acquire_blocking(&self, n: u64) {
        let wait = self.reserve(n as f64);
        if !wait.is_zero() {
            std::thread::sleep(wait);
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

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_holds_at_once_and_zero_lets_everything_through() {
        let l = RateLimiter::new(4000.0);
        tokio::time::sleep(Duration::from_secs(5)).await; // a full bucket
        l.set_rate(1000.0);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            l.acquire(500).await;
        }
        // The saved 4000 tokens were cut to 1000: 4000 more at 1000/s.
        let took = start.elapsed().as_secs_f64();
        assert!((3.9..4.1).contains(&took), "{took}");
        l.set_rate(0.0);
        let start = tokio::time::Instant::now();
        l.acquire(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        l.set_rate(2000.0);
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            l.acquire(1000).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((1.9..2.1).contains(&took), "{took}");
    }
}
