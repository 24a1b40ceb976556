//! The slowest transfer accepted. A server that sends a byte now and then
//! never trips a per-read timeout; one that sends fewer than
//! `bytes_per_sec` bytes a second, averaged over `window`, is given up
//! (and the request retried, then the next mirror asked).

use std::io::{self, Read};
use std::time::Instant;

pub use slate_core::remotes::MinRate;

/// A response body read under a [`MinRate`]: each window (from the first
/// read on) must bring `bytes_per_sec` bytes for each of its seconds, or
/// the read fails with `TimedOut`. A read blocks at most the stall
/// timeout, so a transfer that is too slow ends within the window plus
/// that timeout.
pub(super) struct Paced<R> {
    inner: R,
    rate: MinRate,
    since: Option<Instant>,
    bytes: u64,
}

impl<R: Read> Paced<R> {
    pub(super) fn new(inner: R, rate: MinRate) -> Self {
        Paced {
            inner,
            rate,
            since: None,
            bytes: 0,
        }
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let since = *self.since.get_or_insert_with(Instant::now);
        let n = self.inner.read(buf)?;
        if self.rate.is_off() || n == 0 {
            return Ok(n);
        }
        self.bytes += n as u64;
        let took = since.elapsed();
        if took >= self.rate.window {
            let want = self.rate.bytes_per_sec as f64 * took.as_secs_f64();
            if (self.bytes as f64) < want {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("slower than the minimum rate of {}", self.rate),
                ));
            }
            self.since = Some(Instant::now());
            self.bytes = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Yields one byte per read, waiting `gap` before each.
    struct Drip {
        gap: Duration,
        left: usize,
    }
    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.gap);
            self.left -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn parse() {
        assert_eq!(MinRate::parse("0").map(|r| r.is_off()), Ok(true));
        assert_eq!(
            MinRate::parse("2048/5"),
            Ok(MinRate {
                bytes_per_sec: 2048,
                window: Duration::from_secs(5)
            })
        );
        assert_eq!(
            MinRate::parse("100").map(|r| r.window),
            Ok(Duration::from_secs(30))
        );
        for bad in ["", "x", "1/0", "1/", "-1", "1/2/3"] {
            assert!(MinRate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trickle_is_cut_after_the_window() {
        let rate = MinRate {
            bytes_per_sec: 100,
            window: Duration::from_millis(300),
        };
        let mut r = Paced::new(
            Drip {
                gap: Duration::from_millis(20),
                left: 1000,
            },
            rate,
        );
        let started = Instant::now();
        let e = std::io::copy(&mut r, &mut std::io::sink()).expect_err("too slow");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("100 bytes/s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_fast_enough_body_passes() {
        let rate = MinRate {
            bytes_per_sec: 10,
            window: Duration::from_millis(100),
        };
        let mut r = Paced::new(
            Drip {
                gap: Duration::from_millis(5),
                left: 60,
            },
            rate,
        );
        assert_eq!(std::io::copy(&mut r, &mut std::io::sink()).expect("ok"), 60);
        let mut off = Paced::new(
            Drip {
                gap: Duration::from_millis(5),
                left: 3,
            },
            MinRate::OFF,
        );
        assert_eq!(
            std::io::copy(&mut off, &mut std::io::sink()).expect("ok"),
            3
        );
    }
}
