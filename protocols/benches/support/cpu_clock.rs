//! Criterion measurement shared by the codec benches: the bench thread's CPU time
//! (CLOCK_THREAD_CPUTIME_ID via `cpu-time`), falling back to wall time where that clock is
//! unavailable.
//!
//! The development and CI machines run several builds at once on 2 cores; wall time there
//! mostly measures the scheduler, CPU time counts one core's work.

use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// CPU time of the bench thread.
pub(crate) struct CpuTime;

/// Start point of one sample.
pub(crate) enum Start {
    Cpu(cpu_time::ThreadTime),
    Wall(Instant),
}

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Start;
    type Value = Duration;

    fn start(&self) -> Start {
        cpu_time::ThreadTime::try_now().map_or_else(|_| Start::Wall(Instant::now()), Start::Cpu)
    }
    fn end(&self, i: Start) -> Duration {
        match i {
            Start::Cpu(t) => t.try_elapsed().unwrap_or_default(),
            Start::Wall(t) => t.elapsed(),
        }
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}
