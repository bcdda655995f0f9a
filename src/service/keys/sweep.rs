//! When a server's background sweep looks for values sealed under older keys.

use std::time::{Duration, Instant};

/// When the background sweep for values under older keys runs. Each sweep is a query per
/// sealed column, so an idle server should not run one every `RELOAD_INTERVAL` for nothing;
/// but every value sealed under an older key must move in the end.
#[derive(Default)]
pub(super) struct Sweep {
    /// The current key at the last look, and when this replica first saw it.
    current: Option<(u32, Instant)>,
    last: Option<Instant>,
    /// The last sweep moved something (or failed): more may follow.
    unsettled: bool,
}

/// After this replica sees a new current key (or starts), it sweeps at every reload for this
/// long: other replicas go on sealing under the previous key until their own next reload.
const SETTLING: Duration = Duration::from_secs(30);
/// Otherwise a sweep runs this often, for a value sealed under an older key by a write that
/// was in flight for longer than that.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

impl Sweep {
    pub(super) fn due(&mut self, current: u32, now: Instant) -> bool {
        if self.current.is_none_or(|(key, _)| key != current) {
            self.current = Some((current, now));
        }
        let since = self.current.map_or(now, |(_, since)| since);
        self.unsettled
            || now.duration_since(since) < SETTLING
            || self
                .last
                .is_none_or(|last| now.duration_since(last) >= SWEEP_EVERY)
    }

    pub(super) fn done(&mut self, unsettled: bool, now: Instant) {
        self.unsettled = unsettled;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_while_a_rotation_settles_or_values_move_then_rarely() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut sweep = Sweep::default();
        // A start is a change: every reload sweeps while it settles.
        assert!(sweep.due(1, at(0)));
        sweep.done(false, at(0));
        assert!(sweep.due(1, at(25)));
        sweep.done(false, at(25));
        // Settled, nothing found: not again until SWEEP_EVERY after the last.
        assert!(!sweep.due(1, at(35)));
        assert!(!sweep.due(1, at(320)));
        assert!(sweep.due(1, at(325)));
        sweep.done(false, at(325));
        assert!(!sweep.due(1, at(330)));
        // A new current key settles again.
        assert!(sweep.due(2, at(335)));
        sweep.done(false, at(335));
        assert!(sweep.due(2, at(360)));
        sweep.done(false, at(360));
        assert!(!sweep.due(2, at(370)));
        // Something moved (or the sweep failed): the next reload sweeps too.
        sweep.done(true, at(600));
        assert!(sweep.due(2, at(605)));
        sweep.done(false, at(605));
        assert!(!sweep.due(2, at(610)));
    }
}
