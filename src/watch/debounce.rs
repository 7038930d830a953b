//! A burst of file events becomes one rebuild: the window closes once no event came for
//! `quiet`. Pure (time is passed in) so that it is tested without sleeping.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Debounce {
    quiet: Duration,
    last: Option<Instant>,
    paths: BTreeSet<PathBuf>,
}

impl Debounce {
    pub fn new(quiet: Duration) -> Debounce {
        Debounce { quiet, last: None, paths: BTreeSet::new() }
    }

    pub fn add(&mut self, path: PathBuf, now: Instant) {
        self.paths.insert(path);
        self.last = Some(now);
    }

    /// Restarts the quiet window without a new path (a file still changing).
    pub fn touch(&mut self, now: Instant) {
        if self.last.is_some() {
            self.last = Some(now);
        }
    }

    /// Whether the burst is over.
    pub fn ready(&self, now: Instant) -> bool {
        self.last.is_some_and(|last| now.duration_since(last) >= self.quiet)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.paths.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_events_is_one_trigger_after_the_quiet_window() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = Debounce::new(Duration::from_millis(80));
        assert!(!d.ready(ms(1000)), "nothing happened");
        // An editor save: write temp, rename over, chmod — three events in 5 ms.
        d.add("/p/docs/body.md.swp".into(), ms(0));
        d.add("/p/docs/body.md".into(), ms(2));
        d.add("/p/docs/body.md".into(), ms(5));
        assert!(!d.ready(ms(50)));
        assert!(d.ready(ms(85)));
        assert_eq!(d.paths().len(), 2);
    }

    #[test]
    fn a_file_written_for_a_long_time_waits_for_the_last_write() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::from_millis(80));
        // A training loop writes the model in chunks every 50 ms for a second.
        for i in 0..20 {
            d.add("/p/models/net.keras".into(), t0 + Duration::from_millis(i * 50));
            assert!(!d.ready(t0 + Duration::from_millis(i * 50 + 49)));
        }
        assert!(d.ready(t0 + Duration::from_millis(19 * 50 + 80)));
        // Its size still moved when checked: the window restarts.
        d.touch(t0 + Duration::from_millis(1100));
        assert!(!d.ready(t0 + Duration::from_millis(1150)));
        assert!(d.ready(t0 + Duration::from_millis(1180)));
    }
}
