//! `workerMaxThroughputSchedule`: bandwidth by time of day, in the shape of
//! rclone's `--bwlimit` timetable: `HH:MM,RATE` entries separated by spaces
//! (or `;`), e.g. `08:00,512 12:00,10M 13:00,512 18:00,30M 23:00,off`.
//!
//! RATE is KB/s like `workerMaxThroughput(KB/s)` (KiB/s: a plain number or
//! with `k`), or with `M` / `G` for MiB/s and GiB/s, or `off` for no cap.
//! An entry holds from its time until the next entry's; before the first
//! entry of the day the last one of the day before holds. Times are the
//! daemon host's local time.

/// A parsed schedule: `(minute of the day, bytes per second)` in time order;
/// 0 bytes per second is no cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    entries: Vec<(u16, u64)>,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut entries: Vec<(u16, u64)> = Vec::new();
        for item in text.split([' ', ';', '\t']).filter(|s| !s.is_empty()) {
            let (time, rate) = item
                .split_once(',')
                .ok_or_else(|| format!("{item:?}: expected HH:MM,RATE"))?;
            let minute = parse_time(time).ok_or_else(|| {
                format!("{item:?}: {time:?} is not a time of day (HH:MM, 00:00 to 23:59)")
            })?;
            let rate = parse_rate(rate).ok_or_else(|| {
                format!("{item:?}: {rate:?} is not a rate (KB/s, or with k, M or G, or off)")
            })?;
            if let Some(&(last, _)) = entries.last()
                && minute <= last
            {
                return Err(format!("{item:?}: times must increase through the day"));
            }
            entries.push((minute, rate));
        }
        if entries.is_empty() {
            return Err("no HH:MM,RATE entry".into());
        }
        Ok(Schedule { entries })
    }

    /// Bytes per second at `minute` of the day (0: no cap).
    pub fn at(&self, minute: u16) -> u64 {
        self.entries
            .iter()
            .rev()
            .find(|(m, _)| *m <= minute)
            .or(self.entries.last())
            .map(|e| e.1)
            .unwrap_or(0)
    }

    /// Bytes per second now, by the host's local time.
    pub fn now(&self) -> u64 {
        self.at(local_minute())
    }
}

fn parse_time(t: &str) -> Option<u16> {
    let (h, m) = t.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && t.len() <= 5).then_some(h * 60 + m)
}

fn parse_rate(r: &str) -> Option<u64> {
    if r.eq_ignore_ascii_case("off") {
        return Some(0);
    }
    let (num, mult) = match r.char_indices().last()? {
        (i, 'k' | 'K') => (&r[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&r[..i], 1 << 20),
        (i, 'g' | 'G') => (&r[..i], 1 << 30),
        _ => (r, 1 << 10),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mult as f64) as u64)
}

/// Minutes since local midnight.
fn local_minute() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r only writes the `tm` we own; `t` lives across the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return ((t / 60) % 1440) as u16;
        }
        tm
    };
    (tm.tm_hour * 60 + tm.tm_min) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timetable_holds_from_each_entry_to_the_next_and_wraps_at_midnight() {
        let s = Schedule::parse("08:00,512 12:00,10M;13:00,512k  18:00,1.5G 23:00,off").unwrap();
        assert_eq!(
            s.at(7 * 60 + 59),
            0,
            "before 08:00 the day before's 23:00 holds"
        );
        assert_eq!(s.at(8 * 60), 512 << 10);
        assert_eq!(s.at(12 * 60 + 30), 10 << 20);
        assert_eq!(s.at(13 * 60), 512 << 10);
        assert_eq!(s.at(18 * 60), 3 << 29);
        assert_eq!(s.at(23 * 60 + 59), 0);
        assert_eq!(Schedule::parse("00:00,100").unwrap().at(0), 100 << 10);
        assert_eq!(Schedule::parse("06:00,100").unwrap().at(0), 100 << 10);
        for (bad, why) in [
            ("", "no HH:MM"),
            ("08:00", "expected HH:MM,RATE"),
            ("24:00,1", "not a time of day"),
            ("8:60,1", "not a time of day"),
            ("08:00,fast", "not a rate"),
            ("08:00,-5", "not a rate"),
            ("08:00,0", "not a rate"),
            ("09:00,1 08:00,2", "must increase"),
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(local_minute() < 1440);
    }
}
