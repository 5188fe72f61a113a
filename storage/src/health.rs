//! Whether an endpoint (the destination store, a bucket source) answers at
//! all: the breaker that makes an outage cost time instead of failures.
//!
//! Every request attempt to a store is noted here ([`Health::note`]): an
//! answer below 500 is a sign the endpoint is up, a connection-level error
//! (refused, reset, timed out, DNS, TLS) or a 5xx a sign it may not be.
//! [`TRIP`] such signs in a row within [`TRIP_WINDOW`], with no answer in
//! between, make the endpoint *suspect*: probe requests (a read, never a
//! write) are sent every half second for [`CONFIRM`]. If a probe or any
//! other request gets an answer meanwhile, the signs were the objects' own
//! trouble, or a flaky store's, and nothing changes (objects fail or retry
//! as before). If nothing answers, the outage is *confirmed*: the
//! executor stops the objects in flight on that endpoint and starts no new
//! ones (see `agent::object`), and the probe is repeated with backoff (1 s
//! doubling to 60 s, jittered) until it answers. An object whose failure
//! overlapped a confirmed outage is run again afterwards without being
//! charged; one that fails with the endpoint up fails as before.
//!
//! When an outage ends, work resumes ramping up ([`Health::admit`]): one
//! object at a time on that endpoint in the first second, twice as many
//! each second after, no limit after [`RAMP`], so a store that has just
//! come back (or a link that flaps) is not met by every waiting object at
//! once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use tokio::sync::watch;

/// Connection-level signs in a row that make an endpoint suspect.
pub const TRIP: u32 = 3;
/// ... within this long.
pub const TRIP_WINDOW: Duration = Duration::from_secs(10);
/// How long nothing may answer before an outage is confirmed, and how
/// often it is probed meanwhile.
pub const CONFIRM: Duration = Duration::from_secs(2);
pub const CONFIRM_EVERY: Duration = Duration::from_millis(500);
/// Probe backoff while an endpoint is down.
pub const PROBE_BACKOFF: proto::net::Backoff = proto::net::Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
};

/// How long objects are admitted ramping up after an outage (1, 2, 4, ...
/// at once, doubling every second).
pub const RAMP: Duration = Duration::from_secs(6);

/// One probe: `Ok` if the endpoint answered at all (any status below 500),
/// `Err(why)` if it did not.
pub type Probe = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// What an attempt told about the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// It answered (any status below 500).
    Answered,
    /// No answer (refused, reset, timed out, DNS, TLS) or a 5xx.
    NoAnswer,
}

/// A confirmed outage as shown to people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    /// "destination" or "source".
    pub role: &'static str,
    pub endpoint: String,
    /// When the first sign of it was seen.
    pub since: SystemTime,
    /// What the last probe got.
    pub why: String,
    /// The wait before the next probe.
    pub retry_every: Duration,
}

impl Outage {
    /// `destination http://... unreachable since 10:42:07 UTC (retrying every 4 s): why`.
    pub fn line(&self) -> String {
        let h = proto::api::EndpointHealth {
            role: self.role.to_string(),
            endpoint: self.endpoint.clone(),
            down: Some(self.to_api()),
            ..Default::default()
        };
        h.line().unwrap_or_default()
    }

    fn to_api(&self) -> proto::api::EndpointDown {
        proto::api::EndpointDown {
            since: self
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            retry_every_secs: self.retry_every.as_secs(),
            why: self.why.clone(),
        }
    }
}

/// The published state: what waiters and the status line read.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Confirmed outages so far (an object compares it before and after).
    pub outages: u64,
    /// Whether a probe is deciding now.
    pub suspect: bool,
    pub down: Option<Outage>,
    /// Seconds of confirmed outages ended so far.
    pub down_secs: f64,
}

struct Signs {
    in_a_row: u32,
    first: Option<(Instant, SystemTime)>,
    probing: bool,
    /// When any request last got an answer.
    last_answer: Option<Instant>,
}

/// The breakers of one process, one per endpoint, kept for its life (so
/// their outage counts only grow).
#[derive(Debug, Default)]
pub struct Registry(Mutex<Vec<Arc<Health>>>);

impl Registry {
    /// The breaker of `role`'s `endpoint`, and whether it was made now.
    pub fn get(&self, role: &'static str, endpoint: &str) -> (Arc<Health>, bool) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = all
            .iter()
            .find(|h| h.role == role && h.endpoint == endpoint)
        {
            return (Arc::clone(h), false);
        }
        let h = Health::new(role, endpoint);
        all.push(Arc::clone(&h));
        (h, true)
    }

    pub fn all(&self) -> Vec<Arc<Health>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The health of one endpoint, shared by every request to it.
pub struct Health {
    role: &'static str,
    endpoint: String,
    /// Trip only once the endpoint has answered something (see
    /// [`Health::only_after_an_answer`]).
    after_an_answer: std::sync::atomic::AtomicBool,
    signs: Mutex<Signs>,
    status: watch::Sender<Status>,
    probe: Mutex<Option<Probe>>,
    /// Objects running on this endpoint, and when the last outage ended.
    ramp: Mutex<Ramp>,
    /// The request rate the endpoint is held to while it says it is
    /// overloaded.
    governor: crate::limit::Governor,
}

#[derive(Default)]
struct Ramp {
    running: usize,
    back_at: Option<Instant>,
}

/// An object's place on an endpoint ([`Health::admit`]), given back when
/// dropped.
#[must_use]
pub struct Admitted(Arc<Health>);

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut r = self.0.ramp.lock().unwrap_or_else(|p| p.into_inner());
        r.running = r.running.saturating_sub(1);
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("role", &self.role)
            .field("endpoint", &self.endpoint)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Health {
    pub fn new(role: &'static str, endpoint: &str) -> Arc<Health> {
        Arc::new(Health {
            role,
            endpoint: endpoint.to_string(),
            signs: Mutex::new(Signs {
                in_a_row: 0,
                first: None,
                probing: false,
                last_answer: None,
            }),
            status: watch::Sender::new(Status::default()),
            probe: Mutex::new(None),
            ramp: Mutex::new(Ramp::default()),
            after_an_answer: std::sync::atomic::AtomicBool::new(false),
            governor: crate::limit::Governor::new(),
        })
    }

    /// An endpoint that has never answered is not taken to be down, only
    /// wrong: its objects fail as they would without a breaker. For the
    /// origins of a URL list, where a dead host among many is a bad URL
    /// more often than an outage.
    pub fn only_after_an_answer(&self) {
        self.after_an_answer
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The request that tells whether the endpoint answers (set by the
    /// store once its client exists). Without one, signs are only counted.
    pub fn set_probe(&self, probe: Probe) {
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
    }

    /// The request rate held to the endpoint (see [`crate::limit::Governor`]).
    pub fn governor(&self) -> &crate::limit::Governor {
        &self.governor
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint as heartbeats, `stat` and `/metrics` show it.
    pub fn report(&self) -> proto::api::EndpointHealth {
        let st = self.status.borrow();
        proto::api::EndpointHealth {
            role: self.role.to_string(),
            endpoint: self.endpoint.clone(),
            down: st.down.as_ref().map(Outage::to_api),
            outages: st.outages,
            outage_secs: st.down_secs,
            rate_limit: self.governor.rate(),
            throttled: self.governor.signs(),
        }
    }

    /// The state now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of the state.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Notes what one attempt told; may start a probe (on the current tokio
    /// runtime).
    pub fn note(self: &Arc<Self>, sign: Sign) {
        let mut s = self.signs.lock().unwrap_or_else(|p| p.into_inner());
        match sign {
            Sign::Answered => {
                s.in_a_row = 0;
                s.first = None;
                s.last_answer = Some(Instant::now());
            }
            Sign::NoAnswer => {
                let now = Instant::now();
                match s.first {
                    Some((t, _)) if now.duration_since(t) <= TRIP_WINDOW => s.in_a_row += 1,
                    _ => {
                        s.first = Some((now, SystemTime::now()));
                        s.in_a_row = 1;
                    }
                }
                let has_probe = self
                    .probe
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some();
                let may_trip = s.last_answer.is_some()
                    || !self
                        .after_an_answer
                        .load(std::sync::atomic::Ordering::Relaxed);
                if s.in_a_row >= TRIP
                    && !s.probing
                    && has_probe
                    && may_trip
                    && let Ok(rt) = tokio::runtime::Handle::try_current()
                {
                    s.probing = true;
                    let since = s.first.map(|(_, w)| w).unwrap_or_else(SystemTime::now);
                    self.status.send_modify(|st| st.suspect = true);
                    rt.spawn(Arc::clone(self).probe_until_up(since));
                }
            }
        }
    }

    async fn probe_once(&self) -> Result<(), String> {
        let probe = self.probe.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match probe {
            Some(p) => match tokio::time::timeout(Duration::from_secs(30), p()).await {
                Ok(r) => r,
                Err(_) => Err("the probe got no answer within 30 s".into()),
            },
            None => Ok(()),
        }
    }

    /// Whether any request got an answer after `t`.
    fn answered_since(&self, t: Instant) -> bool {
        let s = self.signs.lock().unwrap_or_else(|p| p.into_inner());
        s.last_answer.is_some_and(|a| a > t)
    }

    /// Confirms the outage: probes every [`CONFIRM_EVERY`] for
    /// [`CONFIRM`], and nothing (probe or request) may get an answer
    /// meanwhile. A store that is only flaky (some answers 5xx, some
    /// connections dropped) answers something within that time; one that
    /// is down does not. `Err(why)`: confirmed, with the last probe's reason.
    async fn confirm(&self) -> Result<(), String> {
        let tripped = Instant::now();
        loop {
            let why = match self.probe_once().await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if self.answered_since(tripped) {
                return Ok(());
            }
            if tripped.elapsed() >= CONFIRM {
                return Err(why);
            }
            tokio::time::sleep(CONFIRM_EVERY).await;
        }
    }

    async fn probe_until_up(self: Arc<Self>, since: SystemTime) {
        let mut attempt = 0u32;
        let mut down_at: Option<Instant> = None;
        let mut first = Some(self.confirm().await);
        loop {
            let probed = match first.take() {
                Some(r) => r,
                None => self.probe_once().await,
            };
            match probed {
                Ok(()) => break,
                Err(why) => {
                    let wait = PROBE_BACKOFF.delay(attempt);
                    let outage = Outage {
                        role: self.role,
                        endpoint: self.endpoint.clone(),
                        since,
                        why: proto::net::printable(&why),
                        retry_every: wait,
                    };
                    if down_at.is_none() {
                        down_at = Some(Instant::now());
                        tracing::warn!(outage = %outage.line(), "Endpoint down: objects wait for it instead of failing.");
                    }
                    self.status.send_modify(|st| {
                        if st.down.is_none() {
                            st.outages += 1;
                        }
                        st.suspect = false;
                        st.down = Some(outage);
                    });
                    tokio::time::sleep(wait).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
        {
            let mut s = self.signs.lock().unwrap_or_else(|p| p.into_inner());
            s.probing = false;
            s.in_a_row = 0;
            s.first = None;
        }
        if let Some(t) = down_at {
            self.ramp.lock().unwrap_or_else(|p| p.into_inner()).back_at = Some(Instant::now());
            tracing::info!(role = self.role, endpoint = %self.endpoint, seconds = t.elapsed().as_secs(), "Endpoint answers again; objects resume.");
        }
        self.status.send_modify(|st| {
            st.suspect = false;
            st.down = None;
            if let Some(t) = down_at {
                st.down_secs += t.elapsed().as_secs_f64();
            }
        });
    }

    /// A place for one object on this endpoint, held while it runs. Free
    /// except in the [`RAMP`] after an outage: then at most 2^s objects run
    /// at once, s the whole seconds since the endpoint answered again.
    pub async fn admit(self: &Arc<Self>) -> Admitted {
        loop {
            {
                let mut r = self.ramp.lock().unwrap_or_else(|p| p.into_inner());
                let allowed = match r.back_at {
                    Some(t) if t.elapsed() < RAMP => 1usize << t.elapsed().as_secs(),
                    _ => usize::MAX,
                };
                if r.running < allowed {
                    r.running += 1;
                    return Admitted(Arc::clone(self));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits while a probe decides or the endpoint is down. `Err` with the
    /// outage once it has lasted longer than `limit` (`None`: no limit).
    pub async fn wait_up(&self, limit: Option<Duration>) -> Result<(), Outage> {
        let mut rx = self.status.subscribe();
        loop {
            let (busy, down) = {
                let st = rx.borrow_and_update();
                (st.suspect || st.down.is_some(), st.down.clone())
            };
            if !busy {
                return Ok(());
            }
            let deadline = match (&down, limit) {
                (Some(o), Some(l)) => {
                    let lasted = o.since.elapsed().unwrap_or_default();
                    if lasted >= l {
                        return Err(o.clone());
                    }
                    Some(l - lasted)
                }
                _ => None,
            };
            match deadline {
                Some(d) => {
                    let _ = tokio::time::timeout(d, rx.changed()).await;
                }
                None => {
                    if rx.changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    fn probed(up: Arc<AtomicBool>, calls: Arc<AtomicU32>) -> Probe {
        Arc::new(move || {
            let (up, calls) = (Arc::clone(&up), Arc::clone(&calls));
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if up.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("connection refused".into())
                }
            })
        })
    }

    /// Signs of one bad object (a probe that answers) change nothing; an
    /// endpoint whose probe fails is down until a probe answers, and the
    /// outage is counted once; answers in between reset the count.
    #[tokio::test(start_paused = true)]
    async fn an_outage_is_confirmed_by_a_probe_and_ends_with_one() {
        let up = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicU32::new(0));
        let h = Health::new("destination", "http://127.0.0.1:1");
        h.set_probe(probed(Arc::clone(&up), Arc::clone(&calls)));

        // Two signs, an answer, two signs: never three in a row.
        for s in [
            Sign::NoAnswer,
            Sign::NoAnswer,
            Sign::Answered,
            Sign::NoAnswer,
            Sign::NoAnswer,
        ] {
            h.note(s);
        }
        assert!(!h.status().suspect);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // Three in a row, but the probe answers: not an outage.
        h.note(Sign::NoAnswer);
        h.wait_up(None).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(h.status().outages, 0);

        // Flaky, not down: the probes fail, but another request gets an
        // answer while they are sent.
        up.store(false, Ordering::SeqCst);
        for _ in 0..TRIP {
            h.note(Sign::NoAnswer);
        }
        tokio::time::sleep(CONFIRM_EVERY).await;
        h.note(Sign::Answered);
        h.wait_up(None).await.unwrap();
        assert_eq!(h.status().outages, 0);

        // Down: waiters wait, probes back off, the limit ends the wait.
        up.store(false, Ordering::SeqCst);
        for _ in 0..TRIP {
            h.note(Sign::NoAnswer);
        }
        tokio::time::sleep(CONFIRM / 2).await;
        assert_eq!(h.status().outages, 0, "confirmed before {CONFIRM:?}");
        assert!(h.status().suspect);
        tokio::time::sleep(CONFIRM).await;
        let st = h.status();
        assert_eq!(st.outages, 1);
        let line = st.down.as_ref().unwrap().line();
        assert!(
            line.starts_with("destination http://127.0.0.1:1 unreachable since "),
            "{line}"
        );
        assert!(line.contains("connection refused"), "{line}");
        let t0 = tokio::time::Instant::now();
        // The limit is measured from the first sign (in real time here).
        let over = h.wait_up(Some(Duration::ZERO)).await.unwrap_err();
        assert_eq!(over.role, "destination");
        let waiter = {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.wait_up(None).await })
        };
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!waiter.is_finished());
        let probes = calls.load(Ordering::SeqCst);
        assert!((7..=14).contains(&probes), "{probes} probes in 23 s");
        up.store(true, Ordering::SeqCst);
        waiter.await.unwrap().unwrap();
        assert!(t0.elapsed() <= Duration::from_secs(20 + 60));
        let st = h.status();
        assert_eq!(
            (st.outages, st.suspect, st.down.is_none()),
            (1, false, true)
        );
        assert!(st.down_secs >= 20.0);
    }

    /// A long outage (3 minutes): probes back off to one a minute, never
    /// further apart; objects resume within a minute of the endpoint's
    /// return; with no limit nothing gives up.
    #[tokio::test(start_paused = true)]
    async fn a_long_outage_is_probed_once_a_minute_at_most() {
        let up = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU32::new(0));
        let h = Health::new("source", "http://127.0.0.1:2/b");
        h.set_probe(probed(Arc::clone(&up), Arc::clone(&calls)));
        for _ in 0..TRIP {
            h.note(Sign::NoAnswer);
        }
        let waiter = {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.wait_up(None).await })
        };
        let mut widest = Duration::ZERO;
        for _ in 0..180 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(d) = h.status().down {
                widest = widest.max(d.retry_every);
            }
        }
        assert!(!waiter.is_finished());
        assert!(
            widest <= Duration::from_secs(60) && widest >= Duration::from_secs(30),
            "{widest:?}"
        );
        let probes = calls.load(Ordering::SeqCst);
        // Five while confirming, then 1, 2, 4 ... 60 s apart.
        assert!((8..=16).contains(&probes), "{probes} probes in 3 min");
        up.store(true, Ordering::SeqCst);
        let back = tokio::time::Instant::now();
        waiter.await.unwrap().unwrap();
        assert!(
            back.elapsed() <= Duration::from_secs(60),
            "{:?}",
            back.elapsed()
        );
        assert_eq!(h.status().outages, 1);
    }

    /// After an outage, objects are let in ramping up: 1 in the first
    /// second, 2, 4, ... and all of them after [`RAMP`]; before any outage
    /// there is no limit.
    #[tokio::test(start_paused = true)]
    async fn work_resumes_ramping_up() {
        let up = Arc::new(AtomicBool::new(false));
        let h = Health::new("destination", "http://127.0.0.1:3");
        h.set_probe(probed(Arc::clone(&up), Arc::new(AtomicU32::new(0))));
        let before: Vec<_> = futures_util::future::join_all((0..50).map(|_| h.admit())).await;
        drop(before);
        for _ in 0..TRIP {
            h.note(Sign::NoAnswer);
        }
        tokio::time::sleep(CONFIRM * 2).await;
        assert_eq!(h.status().outages, 1);
        let admitted = Arc::new(AtomicU32::new(0));
        let waiting: Vec<_> = (0..40)
            .map(|_| {
                let (h, admitted) = (Arc::clone(&h), Arc::clone(&admitted));
                tokio::spawn(async move {
                    h.wait_up(None).await.unwrap();
                    let place = h.admit().await;
                    admitted.fetch_add(1, Ordering::SeqCst);
                    // Each object runs for a long time.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    drop(place);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(admitted.load(Ordering::SeqCst), 0, "admitted while down");
        up.store(true, Ordering::SeqCst);
        // The next probe (at most 4 s away here) sees it back.
        while h.status().down.is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut seen = Vec::new();
        for _ in 0..7 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            seen.push(admitted.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(
            seen,
            [1, 2, 4, 8, 16, 32, 40],
            "objects running at each half second"
        );
        for w in waiting {
            w.await.unwrap();
        }
    }
}
