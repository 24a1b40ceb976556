//! Simulated agents for `bench/fleet.sh` (`slate fleet bench-agents`):
//! many machines enrolled, then reporting as fast as the server takes
//! them, from a few threads, for a bounded time; each report's latency
//! measured.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use crate::client::{Client, ClientError};
use crate::wire::{Deployment, Report, State};

pub struct Options {
    pub server: String,
    pub ca: Option<PathBuf>,
    pub group: String,
    pub token: String,
    pub machines: u32,
    pub threads: u32,
    pub duration: Duration,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Results {
    pub machines: u32,
    pub threads: u32,
    pub enroll_seconds: f64,
    pub reports: u64,
    pub failures: u64,
    pub seconds: f64,
    pub reports_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn key(n: u32) -> SigningKey {
    let mut seed = [0x5au8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    SigningKey::from_bytes(&seed)
}

fn report(n: u32, i: u64) -> Report {
    Report {
        agent_version: "bench".into(),
        hostname: format!("bench-{n}"),
        uptime_secs: i,
        deployments: vec![Deployment {
            os: "debian".into(),
            id: "1".into(),
            commit: format!("{:064x}", 1),
            version: "1.0".into(),
            default: true,
            booted: true,
            pinned: false,
            state: Some(State::Good),
            tries_left: None,
            etc_conflicts: vec![],
            created: 1,
        }],
        staged: vec![],
        bad_commits: vec![],
        drift: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub fn run(o: &Options) -> Result<Results, ClientError> {
    let threads = o.threads.clamp(1, 256);
    let base = Client::new(&o.server, key(u32::MAX), o.ca.as_deref())?;
    let started = Instant::now();
    std::thread::scope(|s| -> Result<(), ClientError> {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let c = Client::sharing(&base, key(u32::MAX));
                s.spawn(move || -> Result<(), ClientError> {
                    let c = c;
                    for n in (t..o.machines).step_by(threads as usize) {
                        Client::sharing(&c, key(n)).enroll(
                            &o.group,
                            &o.token,
                            &format!("bench-{n}"),
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().expect("an enrolling thread")?;
        }
        Ok(())
    })?;
    let enroll_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let deadline = started + o.duration;
    let (lat, failures) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let c = Client::sharing(&base, key(u32::MAX));
                s.spawn(move || {
                    let mine: Vec<Client> = (t..o.machines)
                        .step_by(threads as usize)
                        .map(|n| Client::sharing(&c, key(n)))
                        .collect();
                    let mut lat = Vec::new();
                    let mut failures = 0u64;
                    let mut i = 0u64;
                    while Instant::now() < deadline && !mine.is_empty() {
                        let n = (i as usize) % mine.len();
                        let r = report(t + n as u32 * threads, i);
                        let at = Instant::now();
                        match mine[n].report(&r) {
                            Ok(_) => lat.push(at.elapsed()),
                            Err(_) => failures += 1,
                        }
                        i += 1;
                    }
                    (lat, failures)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut failures = 0;
        for h in hs {
            let (l, f) = h.join().expect("a reporting thread");
            all.extend(l);
            failures += f;
        }
        (all, failures)
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut lat = lat;
    lat.sort();
    Ok(Results {
        machines: o.machines,
        threads,
        enroll_seconds,
        reports: lat.len() as u64,
        failures,
        seconds,
        reports_per_second: lat.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}
