//! Which blocks a pass builds, and from what: a pure function of the manifest,
//! the segments' time windows and the clock, so it is tested without a store.
//!
//! Partitions are aligned windows of the configured lengths (for example 2 h,
//! 12 h, 24 h); windows of different levels either nest or are disjoint. The
//! target of a sample at time `t` is the largest of: the live block holding
//! `t`, the largest *closed* window holding `t` (closed: its end plus the
//! settle time has passed), and the smallest window holding `t`. So fresh data
//! lands in small blocks, closed windows are merged into large ones, and
//! late data for a merged window is merged into that large block. A target's
//! inputs are every live block inside it and every segment with samples in it
//! that the manifest does not already mark done for it.
//!
//! One exception keeps the write cost of the current window down: while a
//! window is still open, new segments become an *additional* block of that
//! window instead of rewriting its block on every pass, until the window has
//! [`OPEN_WINDOW_BLOCKS`] blocks; then they are merged into one. Readers
//! handle several blocks per window (later blocks win duplicates).

use std::collections::BTreeMap;

use storage::manifest::{BlockEntry, SegmentEntry};

/// Blocks an open window may have before a pass merges them.
pub const OPEN_WINDOW_BLOCKS: usize = 6;

/// A time window `[start, end)` in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn length(&self) -> i64 {
        self.end - self.start
    }

    fn contains(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }
}

/// The aligned window of length `len` holding `t`.
pub fn window_of(t: i64, len: i64) -> Window {
    let start = t.div_euclid(len).saturating_mul(len);
    Window {
        start,
        end: start.saturating_add(len),
    }
}

/// A segment as the planner sees it.
#[derive(Clone, Debug)]
pub struct SegmentWindows {
    pub id: String,
    /// Starts of the smallest-level windows the segment has samples in.
    pub windows: Vec<i64>,
    pub done: Option<SegmentEntry>,
}

/// One block to build.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub window: Window,
    /// Ids of the live blocks it replaces.
    pub blocks: Vec<String>,
    /// Ids of the segments whose samples in the window it takes in.
    pub segments: Vec<String>,
}

pub struct Planner<'a> {
    /// Partition lengths (ms), smallest first.
    pub levels: &'a [i64],
    pub now_ms: i64,
    pub settle_ms: i64,
    /// Samples before this are past retention: not compacted.
    pub retention_cutoff: Option<i64>,
}

impl Planner<'_> {
    /// The target window of a sample at `t`.
    pub fn target_of(&self, t: i64, blocks: &[BlockEntry]) -> Window {
        let smallest = self.levels.first().copied().unwrap_or(1);
        let mut best = window_of(t, smallest);
        for &len in self.levels.iter().rev() {
            let w = window_of(t, len);
            if w.end.saturating_add(self.settle_ms) <= self.now_ms {
                if w.length() > best.length() {
                    best = w;
                }
                break;
            }
        }
        for b in blocks {
            let w = Window {
                start: b.start,
                end: b.end,
            };
            if w.contains(t) && w.length() > best.length() {
                best = w;
            }
        }
        best
    }

    /// The blocks to build this pass, oldest window first. `blocks` are the
    /// live blocks of one resolution.
    pub fn plan(&self, blocks: &[BlockEntry], segments: &[SegmentWindows]) -> Vec<Target> {
        let mut targets: BTreeMap<Window, Target> = BTreeMap::new();
        let past_retention =
            |w: &Window| self.retention_cutoff.is_some_and(|cutoff| w.end <= cutoff);
        fn target(targets: &mut BTreeMap<Window, Target>, w: Window) -> &mut Target {
            targets.entry(w).or_insert_with(|| Target {
                window: w,
                blocks: Vec::new(),
                segments: Vec::new(),
            })
        }
        for s in segments {
            if s.done.as_ref().is_some_and(|d| d.replaced_at.is_some()) {
                continue;
            }
            for &start in &s.windows {
                let w = self.target_of(start, blocks);
                if past_retention(&w) || covers(s.done.as_ref(), w) {
                    continue;
                }
                let t = target(&mut targets, w);
                if t.segments.last() != Some(&s.id) {
                    t.segments.push(s.id.clone());
                }
            }
        }
        // Blocks inside a larger target window: merged up.
        for b in blocks {
            let w = self.target_of(b.start, blocks);
            if past_retention(&w) {
                continue;
            }
            if w.length() > b.end - b.start {
                target(&mut targets, w);
            }
        }
        let mut out: Vec<Target> = targets.into_values().collect();
        for t in &mut out {
            t.blocks = blocks
                .iter()
                .filter(|b| b.start < t.window.end && t.window.start < b.end)
                .map(|b| b.id.clone())
                .collect();
            t.segments.dedup();
            let open = t.window.end.saturating_add(self.settle_ms) > self.now_ms;
            if open && t.blocks.len() < OPEN_WINDOW_BLOCKS {
                t.blocks.clear(); // an additional block, see the module docs
            }
        }
        out
    }
}

/// Whether `done` already marks all of `w` as held by blocks.
pub fn covers(done: Option<&SegmentEntry>, w: Window) -> bool {
    let Some(d) = done else { return false };
    if d.replaced_at.is_some() {
        return true;
    }
    d.done.iter().any(|&[s, e]| s <= w.start && w.end <= e)
}

/// `ranges` with `[w.start, w.end)` added, merged and sorted.
pub fn add_range(ranges: &[[i64; 2]], w: Window) -> Vec<[i64; 2]> {
    let mut all: Vec<[i64; 2]> = ranges.to_vec();
    all.push([w.start, w.end]);
    all.sort_unstable();
    let mut out: Vec<[i64; 2]> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r[0] <= last[1] => last[1] = last[1].max(r[1]),
            _ => out.push(r),
        }
    }
    out
}

/// Whether `ranges` cover every window start in `windows` (each `len` long).
pub fn covers_all(ranges: &[[i64; 2]], windows: &[i64], len: i64) -> bool {
    windows.iter().all(|&s| {
        ranges
            .iter()
            .any(|&[a, b]| a <= s && s.saturating_add(len) <= b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn block(id: &str, start: i64, end: i64) -> BlockEntry {
        BlockEntry {
            id: id.into(),
            resolution: "raw".into(),
            start,
            end,
            min_time: start,
            max_time: end - 1,
            samples: 1,
            series: 1,
            bytes: 1,
        }
    }

    fn seg(id: &str, windows: &[i64], done: Option<SegmentEntry>) -> SegmentWindows {
        SegmentWindows {
            id: id.into(),
            windows: windows.to_vec(),
            done,
        }
    }

    fn planner(now: i64) -> Planner<'static> {
        Planner {
            levels: &[2 * H, 12 * H, 24 * H],
            now_ms: now,
            settle_ms: H,
            retention_cutoff: None,
        }
    }

    fn windows(targets: &[Target]) -> Vec<(i64, i64)> {
        targets
            .iter()
            .map(|t| (t.window.start / H, t.window.end / H))
            .collect()
    }

    #[test]
    fn fresh_data_goes_to_small_windows_and_old_data_to_closed_large_ones() {
        // now = day 3, 05:00: day 3's 12 h and 24 h windows are open.
        let p = planner(72 * H + 5 * H);
        let targets = p.plan(
            &[],
            &[
                seg("new", &[72 * H, 74 * H], None),
                seg("old", &[2 * H, 50 * H], None),
            ],
        );
        assert_eq!(windows(&targets), [(0, 24), (48, 72), (72, 74), (74, 76)]);
        assert_eq!(targets[0].segments, ["old"]);
        assert_eq!(targets[2].segments, ["new"]);
        // 12:30 on day 3: the first 12 h window closed only 30 min ago (settle 1 h).
        let p = planner(72 * H + 12 * H + H / 2);
        assert_eq!(
            windows(&p.plan(&[], &[seg("s", &[74 * H], None)])),
            [(74, 76)]
        );
        let p = planner(72 * H + 13 * H);
        assert_eq!(
            windows(&p.plan(&[], &[seg("s", &[74 * H], None)])),
            [(72, 84)]
        );
    }

    #[test]
    fn closed_windows_merge_blocks_and_late_data_joins_the_large_block() {
        let p = planner(100 * H);
        let blocks = [
            block("a", 0, 2 * H),
            block("b", 2 * H, 4 * H),
            block("big", 24 * H, 48 * H),
        ];
        let targets = p.plan(&blocks, &[seg("late", &[30 * H], None)]);
        assert_eq!(windows(&targets), [(0, 24), (24, 48)]);
        assert_eq!(targets[0].blocks, ["a", "b"]);
        assert!(targets[0].segments.is_empty());
        assert_eq!(targets[1].blocks, ["big"]);
        assert_eq!(targets[1].segments, ["late"]);
    }

    #[test]
    fn done_windows_replaced_segments_and_retention_are_skipped() {
        let mut p = planner(10 * H);
        let done = SegmentEntry {
            done: vec![[0, 4 * H]],
            replaced_at: None,
        };
        let replaced = SegmentEntry {
            done: vec![],
            replaced_at: Some(1),
        };
        let targets = p.plan(
            &[],
            &[
                seg("partial", &[0, 2 * H, 4 * H], Some(done)),
                seg("gone", &[0], Some(replaced)),
            ],
        );
        assert_eq!(windows(&targets), [(4, 6)]);
        assert_eq!(targets[0].segments, ["partial"]);
        p.retention_cutoff = Some(6 * H);
        assert!(p.plan(&[], &[seg("s", &[4 * H], None)]).is_empty());
    }

    #[test]
    fn open_windows_add_blocks_until_they_have_enough_then_merge() {
        let p = planner(10 * H);
        let few: Vec<BlockEntry> = (0..OPEN_WINDOW_BLOCKS - 1)
            .map(|i| block(&format!("b{i}"), 8 * H, 10 * H))
            .collect();
        let t = p.plan(&few, &[seg("s", &[8 * H], None)]);
        assert_eq!(windows(&t), [(8, 10)]);
        assert!(t[0].blocks.is_empty());
        let mut many = few.clone();
        many.push(block("last", 8 * H, 10 * H));
        let t = p.plan(&many, &[seg("s", &[8 * H], None)]);
        assert_eq!(t[0].blocks.len(), OPEN_WINDOW_BLOCKS);
        // Closed windows always merge.
        let p = planner(20 * H);
        let t = p.plan(&few, &[seg("s", &[8 * H], None)]);
        assert_eq!(t[0].blocks.len(), OPEN_WINDOW_BLOCKS - 1);
    }

    #[test]
    fn ranges_merge_and_cover() {
        let w = |a: i64, b: i64| Window { start: a, end: b };
        let r = add_range(&[[0, 2]], w(4, 6));
        assert_eq!(r, [[0, 2], [4, 6]]);
        let r = add_range(&r, w(2, 4));
        assert_eq!(r, [[0, 6]]);
        assert!(covers_all(&r, &[0, 2, 4], 2));
        assert!(!covers_all(&r, &[6], 2));
        assert!(covers(
            Some(&SegmentEntry {
                done: r,
                replaced_at: None
            }),
            w(2, 6)
        ));
    }
}
