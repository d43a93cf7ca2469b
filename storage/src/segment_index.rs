//! The binary encoding of a segment's series index (before zstd and base64;
//! see `docs/format/segment.md`). Length-prefixed and little-endian, so
//! writing is a copy of the label bytes and reading is bounds-checked slicing:
//! it replaced JSON, whose string escaping was a measurable share of ingest
//! CPU.
//!
//! ```text
//! min_time i64 | max_time i64 | samples u64 | series u32
//! per series:  id u64 | labels u16 | per label: name_len u32, name, value_len u32, value
//! ```

use crate::labels::{Label, Labels};
use crate::segment::{IndexedSeries, SegmentIndex};

pub fn encode(index: &SegmentIndex) -> Vec<u8> {
    let label_bytes: usize = index
        .series
        .iter()
        .flat_map(|s| s.labels.iter())
        .map(|l| 8 + l.name.len() + l.value.len())
        .sum();
    let mut out = Vec::with_capacity(28 + index.series.len() * 10 + label_bytes);
    out.extend_from_slice(&index.min_time.to_le_bytes());
    out.extend_from_slice(&index.max_time.to_le_bytes());
    out.extend_from_slice(&index.samples.to_le_bytes());
    out.extend_from_slice(&(index.series.len() as u32).to_le_bytes());
    for s in &index.series {
        out.extend_from_slice(&s.id.to_le_bytes());
        out.extend_from_slice(&(s.labels.len() as u16).to_le_bytes());
        for l in &s.labels {
            for part in [&l.name, &l.value] {
                out.extend_from_slice(&(part.len() as u32).to_le_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
    }
    out
}

/// Decodes an index; every length is checked against the buffer and every
/// label set against the label rules, so corrupt bytes are an error.
pub fn decode(buf: &[u8]) -> Result<SegmentIndex, String> {
    let mut r = Reader { buf, pos: 0 };
    let min_time = i64::from_le_bytes(r.array()?);
    let max_time = i64::from_le_bytes(r.array()?);
    let samples = u64::from_le_bytes(r.array()?);
    let count = u32::from_le_bytes(r.array()?) as usize;
    // Each series needs at least 10 bytes: refuse counts the buffer cannot hold
    // before allocating for them.
    if count > r.remaining() / 10 {
        return Err(format!(
            "{count} series cannot fit in {} bytes",
            r.remaining()
        ));
    }
    let mut series = Vec::with_capacity(count);
    for _ in 0..count {
        let id = u64::from_le_bytes(r.array()?);
        let n = u16::from_le_bytes(r.array()?) as usize;
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string()?;
            let value = r.string()?;
            labels.push(Label { name, value });
        }
        let labels = Labels::from_sorted(labels).map_err(|e| format!("series {id}: {e}"))?;
        series.push(IndexedSeries { id, labels });
    }
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes", r.remaining()));
    }
    Ok(SegmentIndex {
        min_time,
        max_time,
        samples,
        series,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated series index")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "label is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> SegmentIndex {
        let labels = |p: &[(&str, &str)]| Labels::from_pairs(p.iter().copied()).expect("labels");
        SegmentIndex {
            min_time: -5,
            max_time: i64::MAX,
            samples: 3,
            series: vec![
                IndexedSeries {
                    id: 1,
                    labels: labels(&[("__name__", "up"), ("job", "é\"\\\n")]),
                },
                IndexedSeries {
                    id: u64::MAX,
                    labels: Labels::empty(),
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let i = index();
        assert_eq!(decode(&encode(&i)), Ok(i));
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        let bytes = encode(&index());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        // A huge series count is refused without allocating for it.
        let mut huge = bytes.clone();
        huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        // A label that is not UTF-8, and labels out of order, are refused.
        let two = SegmentIndex {
            series: vec![IndexedSeries {
                id: 1,
                labels: Labels::from_pairs([("a", "1"), ("b", "2")]).expect("labels"),
            }],
            ..index()
        };
        let good = encode(&two);
        let name_a = good.len() - (1 + 4 + 1 + 4) - (1 + 4 + 1); // "a"
        let name_b = good.len() - (1 + 4 + 1); // "b"
        assert_eq!((good[name_a], good[name_b]), (b'a', b'b'));
        let mut not_utf8 = good.clone();
        not_utf8[name_a] = 0xff;
        assert!(decode(&not_utf8).unwrap_err().contains("UTF-8"));
        let mut unsorted = good.clone();
        unsorted.swap(name_a, name_b);
        assert!(decode(&unsorted).unwrap_err().contains("not sorted"));
    }
}
