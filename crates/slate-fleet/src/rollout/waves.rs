//! The wave logic, pure: which wave a machine is in, and what a rollout
//! does next given where each machine stands.

use sha2::{Digest, Sha256};

/// Waves as cumulative percentages of the group: `5,25,100` is 5 % of
/// the machines first, then up to 25 %, then all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waves(Vec<u8>);

impl Waves {
    /// 1 to 10 percentages, strictly increasing, each 1 to 100, the last 100.
    pub fn parse(text: &str) -> Result<Waves, String> {
        let mut out = Vec::new();
        for part in text.split(',') {
            let p: u8 = part
                .trim()
                .parse()
                .map_err(|_| format!("{part:?} is not a percentage"))?;
            if !(1..=100).contains(&p) || out.last().is_some_and(|&l| l >= p) {
                return Err(format!(
                    "waves {text:?}: each 1 to 100, each larger than the one before"
                ));
            }
            out.push(p);
        }
        if out.len() > 10 || out.last() != Some(&100) {
            return Err(format!("waves {text:?}: 1 to 10 of them, the last 100"));
        }
        Ok(Waves(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn percentages(&self) -> &[u8] {
        &self.0
    }

    /// The wave (0-based) of a machine: by a stable hash of its id, the
    /// same for the machine in every rollout with these waves.
    pub fn of(&self, machine: &str) -> usize {
        let point = position(machine);
        self.0
            .iter()
            .position(|&p| point < u32::from(p) * 100)
            .unwrap_or(self.0.len() - 1)
    }
}

impl std::fmt::Display for Waves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u8::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// A machine's place in 0..10000, from its id.
pub fn position(machine: &str) -> u32 {
    let d = Sha256::digest(format!("slate-fleet-wave\n{machine}").as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (n % 10_000) as u32
}

/// Where a machine stands in a rollout, from its latest report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Booted into the target, blessed.
    Done,
    /// The target went bad on it (boot counting put it back).
    Failed,
    /// Not there yet (not reported, staging, pending).
    Waiting,
}

/// A rollout's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    Aborted,
    Done,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Aborted => "aborted",
            State::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "running" => State::Running,
            "paused" => State::Paused,
            "aborted" => State::Aborted,
            "done" => State::Done,
            _ => return None,
        })
    }

    /// Running or paused: the group's rollout.
    pub fn active(self) -> bool {
        matches!(self, State::Running | State::Paused)
    }
}

/// Counts of one wave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WaveCount {
    pub machines: u64,
    pub done: u64,
    pub failed: u64,
}

/// The next step of a rollout: how many waves are open, and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub opened: usize,
    pub state: State,
    pub failures: u64,
}

/// Count each wave's machines; `machines` gives each one's wave and standing.
pub fn count(waves: usize, machines: &[(usize, Standing)]) -> Vec<WaveCount> {
    let mut out = vec![WaveCount::default(); waves];
    for &(w, s) in machines {
        let Some(c) = out.get_mut(w) else { continue };
        c.machines += 1;
        match s {
            Standing::Done => c.done += 1,
            Standing::Failed => c.failed += 1,
            Standing::Waiting => {}
        }
    }
    out
}

/// What a running rollout does next. Failures count only in open waves;
/// at `max_failures` it pauses itself. Otherwise the next wave opens when
/// every machine of the open ones is done or failed, and the rollout is
/// done when the last wave is. A paused, aborted or done rollout stays
/// as it is.
pub fn step(counts: &[WaveCount], opened: usize, state: State, max_failures: u64) -> Step {
    let opened = opened.clamp(1, counts.len().max(1));
    let failures: u64 = counts.iter().take(opened).map(|c| c.failed).sum();
    if state != State::Running {
        return Step {
            opened,
            state,
            failures,
        };
    }
    if failures >= max_failures {
        return Step {
            opened,
            state: State::Paused,
            failures,
        };
    }
    let settled = |c: &WaveCount| c.done + c.failed == c.machines;
    let mut opened = opened;
    while opened < counts.len() && counts[..opened].iter().all(settled) {
        opened += 1;
    }
    let state = if opened == counts.len() && counts.iter().all(settled) {
        State::Done
    } else {
        State::Running
    };
    Step {
        opened,
        state,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn waves_parse_and_refuse() {
        assert_eq!(
            Waves::parse("5,25,100").map(|w| w.to_string()),
            Ok("5,25,100".into())
        );
        for bad in ["", "5,25", "25,5,100", "0,100", "5,5,100", "x,100", "101"] {
            assert!(Waves::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wave_opens_only_when_the_open_ones_are_settled() {
        let c = |m, d, f| WaveCount {
            machines: m,
            done: d,
            failed: f,
        };
        let counts = [c(2, 1, 0), c(3, 0, 0), c(5, 0, 0)];
        assert_eq!(step(&counts, 1, State::Running, 2).opened, 1);
        let counts = [c(2, 1, 1), c(3, 0, 0), c(5, 0, 0)];
        let s = step(&counts, 1, State::Running, 2);
        assert_eq!((s.opened, s.state, s.failures), (2, State::Running, 1));
        let counts = [c(2, 1, 1), c(3, 2, 1), c(5, 0, 0)];
        assert_eq!(step(&counts, 2, State::Running, 2).state, State::Paused);
        assert_eq!(step(&counts, 2, State::Running, 3).opened, 3);
        // An empty wave is settled.
        let counts = [c(0, 0, 0), c(1, 1, 0)];
        assert_eq!(step(&counts, 1, State::Running, 1).state, State::Done);
        assert_eq!(step(&counts, 1, State::Paused, 1).opened, 1);
    }

    proptest! {
        #[test]
        fn every_machine_is_in_one_wave_and_stays_there(id in "[0-9a-f]{32}", cut in 1u8..100) {
            let w = Waves::parse(&format!("{cut},100")).expect("waves");
            let a = w.of(&id);
            prop_assert!(a < 2);
            prop_assert_eq!(a, w.of(&id));
            // The first wave of a larger cut holds every machine of a smaller one.
            if a == 0 && cut < 99 {
                let wider = Waves::parse(&format!("{},100", cut + 1)).expect("waves");
                prop_assert_eq!(wider.of(&id), 0);
            }
        }

        #[test]
        fn the_step_never_opens_past_an_unsettled_wave(
            raw in proptest::collection::vec((0u64..5, 0u64..5, 0u64..5), 1..6),
            opened in 1usize..6,
            max in 1u64..10,
        ) {
            let counts: Vec<WaveCount> = raw.iter().map(|&(d, f, w)| WaveCount { machines: d + f + w, done: d, failed: f }).collect();
            let s = step(&counts, opened, State::Running, max);
            let start = opened.min(counts.len());
            prop_assert!(s.opened >= start);
            // A wave it opened has every wave before it settled.
            if s.opened > start {
                for c in &counts[..s.opened - 1] {
                    prop_assert_eq!(c.done + c.failed, c.machines);
                }
            }
            if s.state == State::Paused {
                prop_assert!(s.failures >= max);
                prop_assert_eq!(s.opened, start);
            }
            if s.state == State::Done {
                prop_assert_eq!(s.opened, counts.len());
            }
        }
    }

    #[test]
    fn waves_take_about_their_share() {
        let w = Waves::parse("5,25,100").expect("waves");
        let mut n = [0u32; 3];
        for i in 0..10_000 {
            n[w.of(&format!("{i:032x}"))] += 1;
        }
        assert!((400..600).contains(&n[0]), "{n:?}");
        assert!((1800..2200).contains(&n[1]), "{n:?}");
    }
}
