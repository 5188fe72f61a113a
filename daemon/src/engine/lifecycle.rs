//! A job's life as a pure state machine: `(JobState, Event) -> (JobState,
//! effects)`. The engine asks [`next`] before every change of a job and
//! then carries out the effects in order; nothing here touches the store,
//! so every transition is unit-tested below.

use proto::api::JobState;

/// What happens to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The daemon (re)loads the job, or `ossimportctl run` opens it: a
    /// standalone run first takes back what a killed run had leased and
    /// queues its failures again (`fresh_start`).
    Start {
        fresh_start: bool,
    },
    /// The listing ended cleanly.
    ScanFinished,
    /// The listing failed as a whole (source unreachable, listing refused).
    ScanFailed,
    /// The listing is done and no task is pending or leased: every object
    /// is final. `outcome` is [`proto::api::JobCounts::outcome`].
    Drained {
        outcome: JobState,
    },
    /// An incremental job's pass is drained (its listing done, every task
    /// final): the pass ends and the next one is scheduled; the job goes
    /// on running.
    PassDrained,
    /// An incremental job's next pass is due: list the source again.
    NextPass,
    Pause,
    Resume,
    /// `retry`: failed objects back to pending, a failed listing restarted.
    Retry,
    /// `clean`: the job is forgotten, leased tasks included.
    Clean,
}

/// What the engine does for a transition, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Leased tasks back to pending (their executors are told to drop them
    /// at their next heartbeat).
    RequeueLeased,
    /// Failed objects a retry can fix back to pending.
    RetryFailed,
    /// Start the scanner from its checkpoint (if none runs).
    StartScan,
    /// Stop the scanner at its next entry.
    StopScan,
    /// Delete the job's rows and saved files.
    Forget,
    /// Record the end of the pass and when the next one is due.
    EndPass,
    /// Count up the pass and list from the beginning (before `StartScan`).
    BeginPass,
    /// Wake the scheduler: there may be work to hand out.
    Wake,
}

/// The state after an event (`None`: the job no longer exists) and what to
/// do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub to: Option<JobState>,
    pub effects: Vec<Effect>,
}

/// An event that makes no sense in the job's state (a user's `pause` of a
/// paused job): the job is left as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("is {0}, not running")]
    NotRunning(JobState),
    #[error("is {0}, not paused")]
    NotPaused(JobState),
}

/// The one place that decides how a job moves. `scan_done` says whether the
/// listing has finished (a retry restarts only an unfinished one).
pub fn next(from: JobState, scan_done: bool, ev: Event) -> Result<Transition, Refused> {
    use Effect::*;
    use JobState::*;
    let go = |to: JobState, effects: &[Effect]| {
        Ok(Transition {
            to: Some(to),
            effects: effects.to_vec(),
        })
    };
    let scan = if scan_done { None } else { Some(StartScan) };
    match (from, ev) {
        (_, Event::Clean) => Ok(Transition {
            to: None,
            effects: vec![StopScan, Forget],
        }),
        // A standalone run owns its job: whatever it was, it runs again.
        (_, Event::Start { fresh_start: true }) => {
            let mut e = vec![RequeueLeased, RetryFailed];
            e.extend(scan);
            e.push(Wake);
            go(Running, &e)
        }
        (Running, Event::Start { fresh_start: false }) => {
            let mut e: Vec<Effect> = scan.into_iter().collect();
            e.push(Wake);
            go(Running, &e)
        }
        (s, Event::Start { fresh_start: false }) => go(s, &[]),
        (Running, Event::ScanFinished) => go(Running, &[Wake]),
        (s, Event::ScanFinished) => go(s, &[]),
        // Leased tasks finish and count; nothing new is handed out.
        (Running | Paused, Event::ScanFailed) => go(Failed, &[]),
        (s, Event::ScanFailed) => go(s, &[]),
        (Running, Event::Drained { outcome }) if outcome.is_finished() => go(outcome, &[]),
        (s, Event::Drained { .. }) => go(s, &[]),
        (Running, Event::PassDrained) => go(Running, &[EndPass]),
        (s, Event::PassDrained) => go(s, &[]),
        // A paused job's due pass waits for `resume` (and the next tick).
        (Running, Event::NextPass) => go(Running, &[BeginPass, StartScan, Wake]),
        (s, Event::NextPass) => go(s, &[]),
        (Running, Event::Pause) => go(Paused, &[RequeueLeased]),
        (s, Event::Pause) => Err(Refused::NotRunning(s)),
        (Paused, Event::Resume) => {
            let mut e: Vec<Effect> = scan.into_iter().collect();
            e.push(Wake);
            go(Running, &e)
        }
        (s, Event::Resume) => Err(Refused::NotPaused(s)),
        // A paused job stays paused; its failures wait as pending objects.
        (Paused, Event::Retry) => go(Paused, &[RetryFailed]),
        (_, Event::Retry) => {
            let mut e = vec![RetryFailed];
            e.extend(scan);
            e.push(Wake);
            go(Running, &e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Effect::*;
    use super::*;
    use JobState::*;

    const STATES: [JobState; 4] = [Running, Paused, Succeed, Failed];

    fn events() -> Vec<Event> {
        vec![
            Event::Start { fresh_start: true },
            Event::Start { fresh_start: false },
            Event::ScanFinished,
            Event::ScanFailed,
            Event::Drained { outcome: Succeed },
            Event::Drained { outcome: Failed },
            Event::PassDrained,
            Event::NextPass,
            Event::Pause,
            Event::Resume,
            Event::Retry,
            Event::Clean,
        ]
    }

    fn to(t: Result<Transition, Refused>) -> Result<(Option<JobState>, Vec<Effect>), Refused> {
        t.map(|t| (t.to, t.effects))
    }

    /// Every state x event x scan_done, against the table written out by
    /// hand: a change to the machine must change this table.
    #[test]
    fn every_transition() {
        for from in STATES {
            for scan_done in [false, true] {
                for ev in events() {
                    let scan: Vec<Effect> = if scan_done { vec![] } else { vec![StartScan] };
                    let with = |pre: &[Effect], post: &[Effect]| {
                        let mut v = pre.to_vec();
                        v.extend(scan.iter().copied());
                        v.extend_from_slice(post);
                        v
                    };
                    let want = match (from, ev) {
                        (_, Event::Clean) => Ok((None, vec![StopScan, Forget])),
                        (_, Event::Start { fresh_start: true }) => {
                            Ok((Some(Running), with(&[RequeueLeased, RetryFailed], &[Wake])))
                        }
                        (Running, Event::Start { .. }) => Ok((Some(Running), with(&[], &[Wake]))),
                        (s, Event::Start { .. }) => Ok((Some(s), vec![])),
                        (Running, Event::ScanFinished) => Ok((Some(Running), vec![Wake])),
                        (s, Event::ScanFinished) => Ok((Some(s), vec![])),
                        (Running | Paused, Event::ScanFailed) => Ok((Some(Failed), vec![])),
                        (s, Event::ScanFailed) => Ok((Some(s), vec![])),
                        (Running, Event::Drained { outcome }) => Ok((Some(outcome), vec![])),
                        (s, Event::Drained { .. }) => Ok((Some(s), vec![])),
                        (Running, Event::PassDrained) => Ok((Some(Running), vec![EndPass])),
                        (s, Event::PassDrained) => Ok((Some(s), vec![])),
                        (Running, Event::NextPass) => {
                            Ok((Some(Running), vec![BeginPass, StartScan, Wake]))
                        }
                        (s, Event::NextPass) => Ok((Some(s), vec![])),
                        (Running, Event::Pause) => Ok((Some(Paused), vec![RequeueLeased])),
                        (s, Event::Pause) => Err(Refused::NotRunning(s)),
                        (Paused, Event::Resume) => Ok((Some(Running), with(&[], &[Wake]))),
                        (s, Event::Resume) => Err(Refused::NotPaused(s)),
                        (Paused, Event::Retry) => Ok((Some(Paused), vec![RetryFailed])),
                        (_, Event::Retry) => Ok((Some(Running), with(&[RetryFailed], &[Wake]))),
                    };
                    assert_eq!(
                        to(next(from, scan_done, ev)),
                        want,
                        "{from:?} + {ev:?} (scan_done {scan_done})"
                    );
                }
            }
        }
    }

    #[test]
    fn retry_after_a_failed_scan_restarts_the_listing_and_runs_again() {
        let t = next(Running, false, Event::ScanFailed).unwrap();
        assert_eq!(t.to, Some(Failed));
        let t = next(Failed, false, Event::Retry).unwrap();
        assert_eq!(t.to, Some(Running));
        assert_eq!(t.effects, vec![RetryFailed, StartScan, Wake]);
        // After a finished listing a retry only queues the failures.
        let t = next(Failed, true, Event::Retry).unwrap();
        assert_eq!(t.effects, vec![RetryFailed, Wake]);
    }

    #[test]
    fn an_incremental_pass_ends_without_finishing_the_job_and_the_next_lists_again() {
        let t = next(Running, true, Event::PassDrained).unwrap();
        assert_eq!((t.to, t.effects), (Some(Running), vec![EndPass]));
        // The listing starts again although the last one is done.
        let t = next(Running, true, Event::NextPass).unwrap();
        assert_eq!(t.effects, vec![BeginPass, StartScan, Wake]);
        // Paused or finished jobs start no pass.
        for from in [Paused, Succeed, Failed] {
            assert_eq!(next(from, true, Event::NextPass).unwrap().effects, vec![]);
        }
    }

    #[test]
    fn clean_while_tasks_are_leased_forgets_the_job_whatever_its_state() {
        for from in STATES {
            let t = next(from, false, Event::Clean).unwrap();
            assert_eq!(t.to, None);
            // The leases go with the rows; late results match no lease.
            assert_eq!(t.effects, vec![StopScan, Forget]);
        }
    }

    #[test]
    fn only_a_running_job_finishes_and_a_paused_one_waits() {
        assert_eq!(
            next(Running, true, Event::Drained { outcome: Failed })
                .unwrap()
                .to,
            Some(Failed)
        );
        assert_eq!(
            next(Paused, true, Event::Drained { outcome: Succeed })
                .unwrap()
                .to,
            Some(Paused)
        );
        // An unfinished outcome is no outcome.
        assert_eq!(
            next(Running, true, Event::Drained { outcome: Running })
                .unwrap()
                .to,
            Some(Running)
        );
        assert_eq!(
            next(Succeed, true, Event::Pause).unwrap_err().to_string(),
            "is succeed, not running"
        );
    }
}
