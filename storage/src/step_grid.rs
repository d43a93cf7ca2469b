//! The evaluation times of an instant vector selector, and which samples
//! they see. A range query evaluates a plain selector such as `up` only at
//! its steps, each step seeing the latest sample in its lookback window; a
//! read for it may leave out every other sample. A 7-day panel at a
//! 10-minute step over 15-second data sees one sample in 40, so such a read
//! holds (and, on the cold path, writes into fresh memory) a fortieth of
//! the samples.

use crate::sample::Sample;

/// Evaluation times `first, first + step, ..., last`; the time `t` sees the
/// latest sample in `(t - lookback, t]` (Prometheus' left-open window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepGrid {
    first: i64,
    last: i64,
    step: i64,
    lookback: i64,
}

impl StepGrid {
    /// `None` unless `first <= last`, `step > 0` and `lookback > 0`.
    pub fn new(first: i64, last: i64, step: i64, lookback: i64) -> Option<Self> {
        if first > last || step <= 0 || lookback <= 0 {
            return None;
        }
        let span = last.checked_sub(first)?;
        Some(Self {
            first,
            // The last time actually on the grid.
            last: first + span / step * step,
            step,
            lookback,
        })
    }

    /// The number of evaluation times.
    pub fn steps(&self) -> usize {
        usize::try_from((self.last - self.first) / self.step + 1).unwrap_or(usize::MAX)
    }

    /// The first evaluation time at or after `t`, if any.
    fn time_from(&self, t: i64) -> Option<i64> {
        if t <= self.first {
            return Some(self.first);
        }
        let since = t.checked_sub(self.first)?;
        let steps = since / self.step + i64::from(since % self.step != 0);
        let at = self.first.checked_add(steps.checked_mul(self.step)?)?;
        (at <= self.last).then_some(at)
    }

    /// The index of the next sample of the time-sorted `run`, from `*i`
    /// on, that some evaluation time sees (the latest at or before that
    /// time, inside its window); `*i` moves past it. One binary search per
    /// evaluation time, not a look at every sample: a week at a 10-minute
    /// step over 15-second samples skips 39 samples in 40.
    fn next_seen(&self, run: &[Sample], i: &mut usize) -> Option<usize> {
        loop {
            let at = self.time_from(run.get(*i)?.t)?;
            let rest = run.get(*i..)?;
            let j = *i + rest.partition_point(|x| x.t <= at);
            *i = j;
            let latest = run.get(j.checked_sub(1)?)?;
            if at - latest.t < self.lookback {
                return Some(j - 1);
            }
        }
    }

    /// Appends the samples of the time-sorted `run` some evaluation time
    /// sees. The times that see a sample of the run see the same one in
    /// what is appended, so runs of one series may be thinned one by one
    /// and then merged.
    pub fn push_seen(&self, run: &[Sample], out: &mut Vec<Sample>) {
        let mut i = 0;
        while let Some(k) = self.next_seen(run, &mut i) {
            out.push(run[k]);
        }
    }

    /// Keeps of `samples[from..]` (time-sorted) only what some evaluation
    /// time sees, in place.
    pub fn retain_seen(&self, samples: &mut Vec<Sample>, from: usize) {
        let (mut i, mut kept) = (from, from);
        while let Some(k) = self.next_seen(samples, &mut i) {
            samples[kept] = samples[k];
            kept += 1;
        }
        samples.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The sample `t` sees: the latest in `(t - lookback, t]`.
    fn seen_at(samples: &[Sample], t: i64, lookback: i64) -> Option<Sample> {
        samples
            .iter()
            .rev()
            .find(|s| s.t <= t)
            .filter(|s| s.t > t - lookback)
            .copied()
    }

    fn times(g: &StepGrid) -> Vec<i64> {
        (0..g.steps() as i64)
            .map(|i| g.first + i * g.step)
            .collect()
    }

    #[test]
    fn every_evaluation_time_sees_what_it_saw_in_the_whole_run() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..2000 {
            let mut t = rng.random_range(-100..100);
            let samples: Vec<Sample> = (0..rng.random_range(0..60))
                .map(|i| {
                    t += rng.random_range(1..20);
                    Sample::new(t, i as f64)
                })
                .collect();
            let first = rng.random_range(-120..200);
            let grid = StepGrid::new(
                first,
                first + rng.random_range(0..400),
                rng.random_range(1..50),
                rng.random_range(1..60),
            )
            .expect("grid");
            let mut pushed = Vec::new();
            grid.push_seen(&samples, &mut pushed);
            let mut retained = samples.clone();
            retained.insert(0, Sample::new(i64::MIN, 0.0));
            grid.retain_seen(&mut retained, 1);
            assert_eq!(pushed, retained[1..], "push and retain agree");
            assert!(pushed.len() <= grid.steps().min(samples.len()));
            // Thinning two halves apart and merging them keeps every
            // answer too.
            let mid = samples.len() / 2;
            let mut halves = Vec::new();
            grid.push_seen(&samples[..mid], &mut halves);
            grid.push_seen(&samples[mid..], &mut halves);
            for t in times(&grid) {
                let want = seen_at(&samples, t, grid.lookback);
                assert_eq!(seen_at(&pushed, t, grid.lookback), want, "{grid:?} at {t}");
                assert_eq!(seen_at(&halves, t, grid.lookback), want, "halves at {t}");
            }
        }
    }

    #[test]
    fn a_window_is_left_open_and_a_later_sample_in_it_wins() {
        let g = StepGrid::new(100, 300, 100, 50).expect("grid");
        let s = |ts: &[i64]| -> Vec<i64> {
            let run: Vec<Sample> = ts.iter().map(|&t| Sample::new(t, 0.0)).collect();
            let mut out = Vec::new();
            g.push_seen(&run, &mut out);
            out.iter().map(|s| s.t).collect()
        };
        // 50 is outside (50, 100]; 51 is in; 100 is in and later.
        assert_eq!(s(&[50]), Vec::<i64>::new());
        assert_eq!(s(&[51]), vec![51]);
        assert_eq!(s(&[51, 100]), vec![100]);
        // 301 is past the last time; 250 is outside (250, 300].
        assert_eq!(s(&[160, 250, 301]), vec![160]);
        assert_eq!(s(&[160, 260, 301]), vec![160, 260]);
        // A grid's last time is on the grid.
        assert_eq!(StepGrid::new(0, 250, 100, 10).map(|g| g.steps()), Some(3));
        assert_eq!(StepGrid::new(0, 10, 0, 10), None);
    }
}
