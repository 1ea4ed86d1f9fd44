//! What the simulated desktops measure, shared by every agent task: latency histograms (whole
//! run and per second), counters, and errors by kind and close code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds up to one minute.
const MAX_LATENCY_US: u64 = 60_000_000;

#[allow(
    clippy::expect_used,
    reason = "constant bounds that new_with_bounds accepts (1 ≤ low, high ≥ 2·low, 3 figures)"
)]
fn histogram() -> Histogram<u64> {
    // Three significant figures up to a minute: exact enough for p99.9.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub samples: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        samples: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// One second of the run, for the chart and the ramp's knee.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub second: u64,
    pub agents_connected: u64,
    pub round_trip: Percentiles,
    pub sent: u64,
    pub errors: u64,
}

#[derive(Default)]
pub struct Counters {
    pub connected: AtomicU64,
    /// Agents that used up their connection attempts and stopped trying.
    pub gave_up: AtomicU64,
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub sent: AtomicU64,
    pub echoed: AtomicU64,
    pub events: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub pings: AtomicU64,
    pub pongs: AtomicU64,
    pub errors: AtomicU64,
    pub abnormal_closes: AtomicU64,
    pub retries_after: AtomicU64,
}

pub struct Stats {
    pub counters: Counters,
    handshake: Mutex<Histogram<u64>>,
    round_trip: Mutex<Histogram<u64>>,
    /// Round trips while every agent was connected (no connect or reconnect wave under way).
    steady: Mutex<Histogram<u64>>,
    all_connected: AtomicBool,
    window: Mutex<Histogram<u64>>,
    window_errors: AtomicU64,
    ping: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            counters: Counters::default(),
            handshake: Mutex::new(histogram()),
            round_trip: Mutex::new(histogram()),
            steady: Mutex::new(histogram()),
            all_connected: AtomicBool::new(false),
            window: Mutex::new(histogram()),
            window_errors: AtomicU64::new(0),
            ping: Mutex::new(histogram()),
            errors: Mutex::new(BTreeMap::new()),
            closes: Mutex::new(BTreeMap::new()),
        }
    }
}

fn record(h: &Mutex<Histogram<u64>>, us: u64) {
    if let Ok(mut h) = h.lock() {
        let _ = h.record(us.clamp(1, MAX_LATENCY_US));
    }
}

impl Stats {
    pub fn handshake(&self, us: u64) {
        record(&self.handshake, us);
    }

    pub fn round_trip(&self, us: u64) {
        record(&self.round_trip, us);
        record(&self.window, us);
        if self.all_connected.load(Ordering::Relaxed) {
            record(&self.steady, us);
        }
    }

    /// Whether every agent is connected now; round trips then also count as steady state.
    pub fn set_all_connected(&self, all: bool) {
        self.all_connected.store(all, Ordering::Relaxed);
    }

    pub fn ping(&self, us: u64) {
        record(&self.ping, us);
    }

    /// An error by kind (`connect_refused`, `http_429`, `timeout`, `protocol`, ...).
    pub fn error(&self, kind: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.window_errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }

    /// A close the agent received or suffered: its code, `1006` when the connection just ended.
    pub fn close(&self, code: u16) {
        if code == 1006 {
            self.counters
                .abnormal_closes
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut closes) = self.closes.lock() {
            *closes.entry(code.to_string()).or_insert(0) += 1;
        }
    }

    /// Closes the current one-second window.
    pub fn take_window(&self, second: u64, sent_before: &mut u64) -> Window {
        let round_trip = match self.window.lock() {
            Ok(mut h) => {
                let p = percentiles(&h);
                h.reset();
                p
            }
            Err(_) => Percentiles::default(),
        };
        let sent_now = self.counters.sent.load(Ordering::Relaxed);
        let sent = sent_now.saturating_sub(*sent_before);
        *sent_before = sent_now;
        Window {
            second,
            agents_connected: self.counters.connected.load(Ordering::Relaxed),
            round_trip,
            sent,
            errors: self.window_errors.swap(0, Ordering::Relaxed),
        }
    }

    pub fn handshake_percentiles(&self) -> Percentiles {
        self.handshake
            .lock()
            .map(|h| percentiles(&h))
            .unwrap_or_default()
    }

    pub fn round_trip_percentiles(&self) -> Percentiles {
        self.round_trip
            .lock()
            .map(|h| percentiles(&h))
            .unwrap_or_default()
    }

    pub fn steady_percentiles(&self) -> Percentiles {
        self.steady
            .lock()
            .map(|h| percentiles(&h))
            .unwrap_or_default()
    }

    pub fn ping_percentiles(&self) -> Percentiles {
        self.ping
            .lock()
            .map(|h| percentiles(&h))
            .unwrap_or_default()
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn closes(&self) -> BTreeMap<String, u64> {
        self.closes.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let stats = Stats::default();
        for ms in 1..=1000u64 {
            stats.round_trip(ms * 1000);
        }
        let p = stats.round_trip_percentiles();
        assert_eq!(p.samples, 1000);
        assert!((p.p50_ms - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() <= 1.0, "{p:?}");
        let mut sent = 0;
        let window = stats.take_window(0, &mut sent);
        assert_eq!(window.round_trip.samples, 1000);
        // The window starts over; the whole-run histogram does not.
        assert_eq!(stats.take_window(1, &mut sent).round_trip.samples, 0);
        assert_eq!(stats.round_trip_percentiles().samples, 1000);
        // Only round trips while everyone is connected count as steady state.
        assert_eq!(stats.steady_percentiles().samples, 0);
        stats.set_all_connected(true);
        stats.round_trip(2_000);
        assert_eq!(stats.steady_percentiles().samples, 1);
    }

    #[test]
    fn errors_and_closes_are_counted_by_kind() {
        let stats = Stats::default();
        stats.error("http_429");
        stats.error("http_429");
        stats.close(1006);
        stats.close(1000);
        assert_eq!(stats.errors()["http_429"], 2);
        assert_eq!(stats.closes()["1006"], 1);
        assert_eq!(stats.counters.abnormal_closes.load(Ordering::Relaxed), 1);
        assert_eq!(Percentiles::default(), percentiles(&histogram()));
    }
}
