//! Token buckets: the bandwidth cap (`workerMaxThroughput(KB/s)`) shared by
//! every transfer of an executor, and the requests-per-second cap; and the
//! [`Governor`], the request rate an endpoint that says it is overloaded
//! is held to.

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
    /// Seconds' worth of tokens it holds at most.
    burst: f64,
}

impl Bucket {
    fn cap(&self) -> f64 {
        (self.rate * self.burst).max(1.0)
    }
}

impl RateLimiter {
    /// `rate` tokens per second; 0 for no limit.
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter::with_burst(rate, 1.0)
    }

    /// [`RateLimiter::new`], holding at most `burst` seconds' worth of
    /// tokens (at least one): a smaller burst spaces requests more evenly.
    pub fn with_burst(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            state: Mutex::new(Bucket {
                rate: rate.max(0.0),
                tokens: rate.clamp(0.0, 1.0),
                last: Instant::now(),
                burst,
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
            b.tokens = refilled.min(b.cap());
            if rate > 0.0 {
                b.tokens = if b.tokens > 0.0 {
                    b.tokens.min((rate * b.burst).max(1.0))
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
        let refilled = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.rate).min(b.cap());
        let left = refilled - n;
        b.tokens = left;
        b.last = now;
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / b.rate)
        }
    }

    /// Takes `n` tokens if they are there now; otherwise how long until
    /// they would be (nothing taken: no debt for later callers).
    fn try_take(&self, n: f64) -> Result<(), Duration> {
        let mut b = self.bucket();
        if b.rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.rate).min(b.cap());
        b.last = now;
        if b.tokens >= n {
            b.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - b.tokens) / b.rate))
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

/// A store's request rate under throttling, one per endpoint an executor
/// talks to (kept with its breaker, [`crate::health::Health`]): cut by a
/// fixed share on each sign of overload, grown back along a cubic (as
/// TCP CUBIC and the AWS SDKs' adaptive retry mode do).
///
/// Nothing is held back until the store says it is overloaded (HTTP 503,
/// 429, or OSS's `x-oss-qos-delay-time` on an answer: [`Governor::slow_down`]).
/// The first such sign cuts the rate to [`CUT`] of what the store answered
/// in the last second or so (its limit, as far as we can tell: `max`); a
/// sign that came before a second of answers could be measured starts a
/// slow start instead, as TCP's: from the floor, doubling about every
/// 0.7 s until the next sign.
///
/// Later signs cut it again, at most once per [`HOLD`] (requests already
/// sent at the old rate are refused too, and must not cut it again), when
/// they are [`SHARE`] or more of the requests of the last second or two
/// and half as many again as the store refused at the lower rate after
/// the last cut (refusals that began at this rate), or [`MOST`] of them:
/// to [`CUT`] of the rate when it is back at `max` or above (that is where
/// the limit is), else to [`CUT`] of what the store took (the limit fell).
/// Signs at the same share at every rate are the store's noise (one
/// request in eleven refused whatever the rate), which a lower rate would
/// not end: they cut nothing, and the rate goes on climbing past them.
///
/// Between cuts, while requests wait for the rate, it follows
/// `max + c (t - k)^3`, t the seconds since the cut: it climbs back fast,
/// flattens out near `max` about [`TO_MAX`] after the cut (few refusals, a
/// mean rate near the limit), then probes above it, faster and faster,
/// until the next sign. `c` is set from the highest answer rate of the
/// last minute, so a burst of refusals that cut the rate far down is made
/// up in seconds. After [`RELEASE`] without a sign the rate is let go.
///
/// Every request of every object on the endpoint waits its turn here, so
/// the executor's objects slow down together instead of each backing off
/// alone.
#[derive(Debug)]
pub struct Governor {
    pace: RateLimiter,
    /// Fast path: whether a rate is held at all.
    governed: std::sync::atomic::AtomicBool,
    state: Mutex<Gov>,
}

/// The rate is cut to this share of `max` on a sign.
pub const CUT: f64 = 0.8;
/// At most one cut per this long.
pub const HOLD: Duration = Duration::from_secs(1);
/// How long after a cut the rate is back at `max` (`k`).
pub const TO_MAX: f64 = 4.0;
/// Requests paced by the governor come at most this many seconds' worth
/// at once: a store counting requests over short windows sees an even
/// rate.
pub const BURST: f64 = 0.05;
/// No rate below this many requests per second.
pub const FLOOR: f64 = 1.0;
/// Without a sign for this long, no rate is held.
pub const RELEASE: Duration = Duration::from_secs(300);
/// Requests of the last second or two (or 3 signs) needed to judge the
/// share of signs among them.
pub const SAMPLE: u32 = 20;
/// Signs below this share of the requests of the last second or two cut
/// nothing once a rate is held (a store's odd 503).
pub const SHARE: f64 = 0.02;
/// Signs this share of the requests or more cut the rate whatever share
/// the store gave before.
pub const MOST: f64 = 0.25;
/// How long the highest answer rate is remembered.
const PEAK_FOR: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Gov {
    /// The rate held (requests per second), 0: none.
    rate: f64,
    /// The cubic: `max + c (t - k)^3` from the last cut.
    max: f64,
    c: f64,
    k: f64,
    last_cut: Option<Instant>,
    last_sign: Option<Instant>,
    /// The share of signs that made the last cut, and the answers and
    /// signs since it.
    cut_share: f64,
    since_cut: (u32, u32),
    /// Whether the last cut had too few answers to measure the store by.
    slow_start: bool,
    /// Whether a request waited for the rate since the last update.
    waited: bool,
    last_update: Instant,
    /// The current window of about a second: when it began (its first
    /// answer or sign), its answers and signs; and the window before it
    /// (answers, signs, length in seconds).
    window: Option<(Instant, u32, u32)>,
    before: (u32, u32, f64),
    /// The highest answer rate of a window, and when.
    peak: (f64, Instant),
    signs: u64,
}

impl Default for Governor {
    fn default() -> Governor {
        Governor::new()
    }
}

impl Gov {
    /// What the store answered in the last second or so, per second.
    /// `None` when fewer than a second of answers were seen (at the start).
    fn took(&self, now: Instant) -> Option<f64> {
        let (n, _, len) = self.recent(now);
        (len >= 1.0).then(|| f64::from(n) / len)
    }

    /// Answers and signs of the last second or two, and over how long.
    fn recent(&self, now: Instant) -> (u32, u32, f64) {
        let (n, s, len) = self.window.map_or((0, 0, 0.0), |(start, n, s)| {
            (n, s, now.duration_since(start).as_secs_f64())
        });
        let (m, t, before) = self.before;
        (n + m, s + t, len + before)
    }

    /// Counts an answer or a sign in the current window.
    fn count(&mut self, now: Instant, sign: bool) {
        let (a, s) = (u32::from(!sign), u32::from(sign));
        match self.window {
            Some((start, n, t)) if now.duration_since(start) < Duration::from_secs(1) => {
                self.window = Some((start, n + a, t + s));
            }
            Some((start, n, t)) => {
                // A window long past says nothing of the rate now.
                let len = now.duration_since(start).as_secs_f64();
                self.before = if len < 2.0 { (n, t, len) } else { (0, 0, 0.0) };
                self.window = Some((now, a, s));
                let r = f64::from(n) / len;
                if r >= self.peak.0 || now.duration_since(self.peak.1) >= PEAK_FOR {
                    self.peak = (r, now);
                }
            }
            None => self.window = Some((now, a, s)),
        }
        self.since_cut.0 += a;
        self.since_cut.1 += s;
    }

    /// The share of signs among the requests of the last second or two,
    /// if there were enough of them to tell.
    fn share(&self, now: Instant) -> Option<f64> {
        let (n, s, _) = self.recent(now);
        (n + s >= SAMPLE || s >= 3).then(|| f64::from(s) / f64::from(n + s))
    }

    /// The share of signs the store gives anyway: among the requests after
    /// the last cut and before the last second or two (at a lower rate), or
    /// if they were too few, the share that made the cut.
    fn usual_share(&self, now: Instant) -> f64 {
        let (n, s, _) = self.recent(now);
        let (all_n, all_s) = self.since_cut;
        let (n, s) = (all_n.saturating_sub(n), all_s.saturating_sub(s));
        if n + s >= SAMPLE {
            f64::from(s) / f64::from(n + s)
        } else {
            self.cut_share
        }
    }
}

impl Governor {
    pub fn new() -> Governor {
        let now = Instant::now();
        Governor {
            pace: RateLimiter::with_burst(0.0, BURST),
            governed: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(Gov {
                rate: 0.0,
                max: 0.0,
                c: 0.0,
                k: 0.0,
                last_cut: None,
                last_sign: None,
                cut_share: 0.0,
                since_cut: (0, 0),
                slow_start: false,
                waited: false,
                last_update: now,
                window: None,
                before: (0, 0, 0.0),
                peak: (0.0, now),
                signs: 0,
            }),
        }
    }

    fn gov(&self) -> std::sync::MutexGuard<'_, Gov> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate held now (requests per second), 0 when none is.
    pub fn rate(&self) -> f64 {
        self.gov().rate
    }

    /// Signs of overload seen so far.
    pub fn signs(&self) -> u64 {
        self.gov().signs
    }

    /// Waits for this request's turn under the rate held, if one is. The
    /// wait is taken in slices of at most a tenth of a second, so a rate
    /// raised meanwhile (or let go) shortens it.
    pub async fn acquire(&self) {
        loop {
            if !self.governed.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            self.tick(Instant::now());
            match self.pace.try_take(1.0) {
                Ok(()) => return,
                Err(wait) => {
                    self.gov().waited = true;
                    let slice = wait.clamp(Duration::from_millis(1), Duration::from_millis(100));
                    tokio::time::sleep(slice).await;
                }
            }
        }
    }

    /// Moves the rate along its cubic (ten times a second, while requests
    /// wait for it), or lets it go.
    fn tick(&self, now: Instant) {
        let mut g = self.gov();
        if g.rate == 0.0 {
            return;
        }
        if g.last_sign
            .is_some_and(|t| now.duration_since(t) >= RELEASE)
        {
            g.rate = 0.0;
            self.pace.set_rate(0.0);
            self.governed
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let Some(cut) = g.last_cut else { return };
        if now.duration_since(g.last_update) < Duration::from_millis(100)
            || now.duration_since(cut) < HOLD
        {
            return;
        }
        if g.waited {
            let t = now.duration_since(cut).as_secs_f64() - g.k;
            let mut next = g.max + g.c * t * t * t;
            if g.slow_start {
                let dt = now.duration_since(g.last_update).as_secs_f64().min(1.0);
                next = next.max(g.rate * (1.0 + dt));
            }
            // At most a quarter more per update (about 9x a second).
            let next = next.clamp(FLOOR, g.rate * 2.0);
            if next > g.rate {
                g.rate = next;
                self.pace.set_rate(next);
            }
        }
        g.waited = false;
        g.last_update = now;
    }

    /// An answer that was no sign of overload.
    pub fn answered(&self) {
        let now = Instant::now();
        self.gov().count(now, false);
    }

    /// A sign of overload: a 503 or 429, or an answer OSS delayed.
    pub fn slow_down(&self) {
        let now = Instant::now();
        let mut g = self.gov();
        g.signs += 1;
        g.last_sign = Some(now);
        g.count(now, true);
        if g.rate > 0.0 && g.last_cut.is_some_and(|t| now.duration_since(t) < HOLD) {
            return;
        }
        let took = g.took(now);
        // What the store took, as the limit: the rate cut to below it by
        // at most half per cut (while the rate climbs, what was taken over
        // the last second lags behind it).
        let by_took = |rate: f64| rate.min(took.unwrap_or(FLOOR).max(rate * 0.5));
        let share = g.share(now).unwrap_or(0.0);
        let max = if g.rate > 0.0 {
            // Out of a slow start, the first sign ends it.
            if !g.slow_start
                && (share < SHARE || (share < MOST && share < 1.5 * g.usual_share(now) + 0.01))
            {
                // Few, or no more than the store gives anyway at lower
                // rates (one request in eleven refused whatever the rate):
                // noise, which a lower rate would not end.
                return;
            }
            if g.slow_start {
                // Doubling overshoots: what the store took is the limit.
                g.slow_start = false;
                by_took(g.rate)
            } else if g.rate >= g.max * 0.99 && took.is_none_or(|t| t >= g.rate * CUT) {
                // At or past the limit found last time: there it is.
                g.rate
            } else {
                // Below it, or the store took far less: the limit fell.
                by_took(g.rate)
            }
        } else {
            // The first sign: what the store took in the last second or so.
            // Too little seen to tell (a sign within the first second):
            // start low and double about every 0.7 s until the next sign.
            g.slow_start = took.is_none();
            took.unwrap_or(FLOOR)
        }
        .max(FLOOR);
        let peak = if now.duration_since(g.peak.1) < PEAK_FOR {
            g.peak.0
        } else {
            0.0
        };
        // Back at max after TO_MAX when the store's recent best is max;
        // sooner when it was higher.
        g.c = max.max(peak) * (1.0 - CUT) / TO_MAX.powi(3);
        g.k = (max * (1.0 - CUT) / g.c).cbrt();
        g.max = max;
        g.rate = (max * CUT).max(FLOOR);
        g.cut_share = share;
        g.since_cut = (0, 0);
        g.last_cut = Some(now);
        g.last_update = now;
        g.waited = false;
        self.pace.set_rate(g.rate);
        self.governed
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

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

    /// A store that takes `limit` requests per second (a bucket of a tenth
    /// of a second) and refuses the rest, asked by 16 clients at once with
    /// 10 ms answers through one governor for `secs`: (accepted per second
    /// over the last half, refused share of all, the rate at the end).
    async fn against_a_store(gov: Arc<Governor>, limit: f64, secs: u64) -> (f64, f64, f64) {
        against(gov, limit, 0, secs).await
    }

    /// [`against_a_store`], the store also refusing every `every`-th
    /// request whatever the rate (0: none).
    async fn against(gov: Arc<Governor>, limit: f64, every: u64, secs: u64) -> (f64, f64, f64) {
        use std::sync::atomic::AtomicU64;
        struct Store {
            tokens: f64,
            last: Instant,
        }
        let store = Arc::new(Mutex::new(Store {
            tokens: 0.0,
            last: Instant::now(),
        }));
        let (ok_late, refused, all) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let start = Instant::now();
        let end = start + Duration::from_secs(secs);
        let half = start + Duration::from_secs(secs / 2);
        let mut clients = Vec::new();
        for _ in 0..16 {
            let (gov, store) = (Arc::clone(&gov), Arc::clone(&store));
            let (ok_late, refused, all) = (ok_late.clone(), refused.clone(), all.clone());
            clients.push(tokio::spawn(async move {
                while Instant::now() < end {
                    gov.acquire().await;
                    let now = Instant::now();
                    let taken = {
                        let mut s = store.lock().unwrap();
                        let since = now.duration_since(s.last).as_secs_f64();
                        s.tokens = (s.tokens + since * limit).min(limit / 10.0);
                        s.last = now;
                        let noise = every > 0 && all.load(Ordering::Relaxed) % every == every - 1;
                        if s.tokens >= 1.0 && !noise {
                            s.tokens -= 1.0;
                            true
                        } else {
                            false
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    all.fetch_add(1, Ordering::Relaxed);
                    if taken {
                        gov.answered();
                        if now >= half {
                            ok_late.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                        gov.slow_down();
                    }
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        let late = ok_late.load(Ordering::Relaxed) as f64 / (secs - secs / 2) as f64;
        let refused =
            refused.load(Ordering::Relaxed) as f64 / all.load(Ordering::Relaxed).max(1) as f64;
        (late, refused, gov.rate())
    }

    #[tokio::test(start_paused = true)]
    async fn the_governor_settles_near_the_stores_limit_with_few_refusals() {
        for limit in [20.0, 100.0, 400.0] {
            let gov = Arc::new(Governor::new());
            let (late, refused, rate) = against_a_store(Arc::clone(&gov), limit, 120).await;
            eprintln!(
                "limit {limit}/s: {late:.1} accepted/s, {:.2}% refused, rate {rate:.1}",
                refused * 100.0
            );
            assert!(
                late >= 0.8 * limit && late <= limit * 1.01,
                "limit {limit}: {late:.1} accepted/s"
            );
            assert!(
                refused < 0.05,
                "limit {limit}: {:.1}% refused",
                refused * 100.0
            );
            assert!(
                rate >= 0.75 * limit && rate <= 1.2 * limit,
                "limit {limit}: rate {rate:.1}"
            );
            assert!(gov.signs() > 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_governor_cut_far_down_climbs_back_in_seconds_and_lets_go_when_quiet() {
        let gov = Arc::new(Governor::new());
        // A store taking 300 requests a second...
        against_a_store(Arc::clone(&gov), 300.0, 20).await;
        // ... refuses everything for 10 s: the rate falls to a tenth.
        for _ in 0..100 {
            gov.slow_down();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gov.rate() < 30.0, "{}", gov.rate());
        // Then takes 300/s again: within 10 s the rate is back near it.
        let (late, refused, _) = against_a_store(Arc::clone(&gov), 300.0, 20).await;
        assert!(late >= 0.8 * 300.0, "{late:.1} accepted/s");
        assert!(refused < 0.05, "{:.1}% refused", refused * 100.0);
        // Quiet for RELEASE: no rate is held, requests pass at once.
        tokio::time::sleep(RELEASE).await;
        let t = Instant::now();
        for _ in 0..1000 {
            gov.acquire().await;
        }
        assert_eq!(t.elapsed(), Duration::ZERO);
        assert_eq!(gov.rate(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_refusing_one_request_in_eleven_whatever_the_rate_is_not_ratcheted_down() {
        // 16 clients with 10 ms answers ask at most 1,600 a second.
        let gov = Arc::new(Governor::new());
        let (late, refused, rate) = against(Arc::clone(&gov), f64::INFINITY, 11, 120).await;
        eprintln!(
            "{late:.1} accepted/s, {:.2}% refused, rate {rate:.1}",
            refused * 100.0
        );
        assert!(late >= 800.0, "{late:.1} accepted/s: ratcheted down");
        // And with a limit too: settles near it.
        let gov = Arc::new(Governor::new());
        let (late, _, _) = against(Arc::clone(&gov), 200.0, 11, 120).await;
        assert!(late >= 0.8 * 200.0 * 10.0 / 11.0, "{late:.1} accepted/s");
    }

    #[test]
    fn an_idle_governor_holds_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let gov = Governor::new();
            for _ in 0..100 {
                gov.answered();
            }
            let t = Instant::now();
            for _ in 0..10_000 {
                gov.acquire().await;
            }
            assert_eq!(t.elapsed(), Duration::ZERO);
            assert_eq!(gov.rate(), 0.0);
        });
    }
}
