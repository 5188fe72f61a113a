//! One scanner per job, and no listing lost to a scanner that is ending.
//!
//! A pass can be begun while the previous pass's scanner is still winding
//! down (its end is recorded, the pass drains at once, a watched job's
//! next pass is due at once). The start asked for then is kept, not
//! dropped: the scanner that runs lists again when it ends, if the job's
//! listing is still not done. Dropping it left the begun pass with no
//! scanner, and the job waited forever.

use std::sync::atomic::{AtomicU8, Ordering};

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
/// Running, and a start was asked for meanwhile.
const AGAIN: u8 = 2;

/// Whether a job's scanner runs, and whether it was asked to list again.
#[derive(Debug, Default)]
pub struct ScanSlot(AtomicU8);

impl ScanSlot {
    /// Asks for a listing: `true` when the caller is to start the scanner;
    /// `false` when one runs, which then lists again when it ends.
    pub fn claim(&self) -> bool {
        let mut now = self.0.load(Ordering::SeqCst);
        loop {
            let next = if now == IDLE { RUNNING } else { AGAIN };
            match self
                .0
                .compare_exchange(now, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return now == IDLE,
                Err(seen) => now = seen,
            }
        }
    }

    /// The running scanner's listing ended: `true` when a start was asked
    /// for meanwhile (the slot stays the caller's: it lists again, or, if
    /// the job needs no listing now, releases again), else the slot is
    /// free.
    pub fn release(&self) -> bool {
        if self
            .0
            .compare_exchange(RUNNING, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return false;
        }
        // AGAIN: what was asked is the listing about to run.
        self.0.store(RUNNING, Ordering::SeqCst);
        true
    }

    /// The scanner stopped midway (it panicked): the slot is free.
    pub fn abandon(&self) {
        self.0.store(IDLE, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_start_asked_while_one_runs_is_kept_for_its_end() {
        let s = ScanSlot::default();
        assert!(s.claim(), "a free slot starts a scanner");
        assert!(!s.claim(), "one scanner per job");
        assert!(!s.claim());
        assert!(s.release(), "the start asked meanwhile is run");
        assert!(!s.claim(), "the slot is still held by the scanner");
        assert!(s.release());
        assert!(!s.release(), "nothing asked: free");
        assert!(s.claim(), "and a new start runs");
        s.abandon();
        assert!(s.claim());
    }

    /// Starts asked from many threads while scanners end: each start is
    /// followed by a listing that begins after it (a scanner of its own, or
    /// the running one listing again), and no two scanners run at once.
    #[test]
    fn no_start_is_lost_and_no_two_scanners_run_at_once() {
        let slot = ScanSlot::default();
        let (running, asked, covered) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let scan = || {
            loop {
                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "two scanners");
                // Every start asked before this point is listed by it.
                covered.fetch_max(asked.load(Ordering::SeqCst), Ordering::SeqCst);
                // Ending: what is asked from here on needs another listing.
                std::thread::sleep(std::time::Duration::from_micros(50));
                running.fetch_sub(1, Ordering::SeqCst);
                if !slot.release() {
                    break;
                }
            }
        };
        // Rounds, each checked once its scanners have ended: each is a
        // chance for a start to fall on a scanner's end.
        for round in 0..50 {
            std::thread::scope(|sc| {
                for _ in 0..4 {
                    sc.spawn(|| {
                        for _ in 0..20 {
                            asked.fetch_add(1, Ordering::SeqCst);
                            if slot.claim() {
                                sc.spawn(scan);
                            }
                            std::thread::sleep(std::time::Duration::from_micros(20));
                        }
                    });
                }
            });
            assert_eq!(
                covered.load(Ordering::SeqCst),
                asked.load(Ordering::SeqCst),
                "round {round}: a start was lost"
            );
        }
        assert!(slot.claim(), "the slot is free once the scanners end");
    }
}
