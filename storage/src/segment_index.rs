//! The binary encodings of a series index (before zstd and base64; see
//! `docs/format/segment.md`). Little-endian and length-prefixed, so writing
//! is a copy of the label bytes and reading is bounds-checked slicing: they
//! replaced JSON, whose string escaping was a measurable share of ingest CPU.
//!
//! Two layouts share the header:
//!
//! ```text
//! header:      min_time i64 | max_time i64 | samples u64 | series u32
//!
//! WithIds (segments up to version 2, blocks):
//! per series:  id u64 | labels u16 | per label: name_len u32, name, value_len u32, value
//!
//! NameTable (segments since version 3):
//!              names u32 | per name: len varint, name
//! per series:  labels varint | per label: name varint (position in the names), value_len varint, value
//! ```
//!
//! NameTable stores each label name once and no series ids (a reader
//! derives each id from its labels): the ids were 8 incompressible bytes
//! per series and the repeated names half of the raw bytes, so the index
//! is about half the bytes to compress and 60 % smaller compressed.

use std::collections::HashMap;

use crate::chunk::bits::{put_varint, read_varint};
use crate::labels::{Label, Labels};
use crate::segment::{IndexedSeries, SegmentIndex};

/// How the series of an index are laid out (the header is common).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Each series with its id and its label names in full.
    WithIds,
    /// Label names in one table, series without ids (derived on read).
    NameTable,
}

pub fn encode(index: &SegmentIndex, layout: Layout) -> Vec<u8> {
    match layout {
        Layout::WithIds => encode_with_ids(index),
        Layout::NameTable => encode_name_table(index),
    }
}

/// Decodes an index; every length is checked against the buffer and every
/// label set against the label rules, so corrupt bytes are an error.
pub fn decode(buf: &[u8], layout: Layout) -> Result<SegmentIndex, String> {
    let mut r = Reader { buf, pos: 0 };
    let min_time = i64::from_le_bytes(r.array()?);
    let max_time = i64::from_le_bytes(r.array()?);
    let samples = u64::from_le_bytes(r.array()?);
    let count = u32::from_le_bytes(r.array()?) as usize;
    let series = match layout {
        Layout::WithIds => decode_with_ids(&mut r, count)?,
        Layout::NameTable => decode_name_table(&mut r, count)?,
    };
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

fn header(index: &SegmentIndex, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + capacity);
    out.extend_from_slice(&index.min_time.to_le_bytes());
    out.extend_from_slice(&index.max_time.to_le_bytes());
    out.extend_from_slice(&index.samples.to_le_bytes());
    out.extend_from_slice(&(index.series.len() as u32).to_le_bytes());
    out
}

fn encode_with_ids(index: &SegmentIndex) -> Vec<u8> {
    let label_bytes: usize = index
        .series
        .iter()
        .flat_map(|s| s.labels.iter())
        .map(|l| 8 + l.name.len() + l.value.len())
        .sum();
    let mut out = header(index, index.series.len() * 10 + label_bytes);
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

fn decode_with_ids(r: &mut Reader<'_>, count: usize) -> Result<Vec<IndexedSeries>, String> {
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
    Ok(series)
}

fn encode_name_table(index: &SegmentIndex) -> Vec<u8> {
    let value_bytes: usize = index
        .series
        .iter()
        .flat_map(|s| s.labels.iter())
        .map(|l| 3 + l.value.len())
        .sum();
    let mut body = Vec::with_capacity(index.series.len() + value_bytes);
    let mut names: Vec<&str> = Vec::new();
    let mut positions: HashMap<&str, usize> = HashMap::new();
    // The name position used at each label position by the previous series:
    // series mostly share their label names, so one comparison usually finds
    // the name without hashing it.
    let mut last: Vec<usize> = Vec::new();
    for s in &index.series {
        put_varint(&mut body, s.labels.len() as u64);
        for (k, l) in s.labels.iter().enumerate() {
            let pos = match last.get(k) {
                Some(&p) if names[p] == l.name => p,
                _ => *positions.entry(&l.name).or_insert_with(|| {
                    names.push(&l.name);
                    names.len() - 1
                }),
            };
            match last.get_mut(k) {
                Some(slot) => *slot = pos,
                None => last.push(pos),
            }
            put_varint(&mut body, pos as u64);
            put_varint(&mut body, l.value.len() as u64);
            body.extend_from_slice(l.value.as_bytes());
        }
    }
    let name_bytes: usize = names.iter().map(|n| n.len() + 2).sum();
    let mut out = header(index, 4 + name_bytes + body.len());
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for n in &names {
        put_varint(&mut out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
    }
    out.extend_from_slice(&body);
    out
}

fn decode_name_table(r: &mut Reader<'_>, count: usize) -> Result<Vec<IndexedSeries>, String> {
    let name_count = u32::from_le_bytes(r.array()?) as usize;
    // A name needs at least 1 byte and a series too: refuse counts the
    // buffer cannot hold before allocating for them.
    if name_count > r.remaining() {
        return Err(format!(
            "{name_count} label names cannot fit in {} bytes",
            r.remaining()
        ));
    }
    let mut names = Vec::with_capacity(name_count);
    for _ in 0..name_count {
        let n = r.varint()?;
        names.push(r.utf8(n)?);
    }
    if count > r.remaining() {
        return Err(format!(
            "{count} series cannot fit in {} bytes",
            r.remaining()
        ));
    }
    let mut series: Vec<IndexedSeries> = Vec::with_capacity(count);
    for _ in 0..count {
        // A label needs at least 2 bytes.
        let n = r.varint()?;
        if n > r.remaining() / 2 {
            return Err(format!("{n} labels cannot fit in {} bytes", r.remaining()));
        }
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let pos = r.varint()?;
            let name = names
                .get(pos)
                .ok_or_else(|| format!("label name {pos} of {}", names.len()))?
                .clone();
            let len = r.varint()?;
            let value = r.utf8(len)?;
            labels.push(Label { name, value });
        }
        let labels =
            Labels::from_sorted(labels).map_err(|e| format!("series {}: {e}", series.len()))?;
        let id = labels.series_id();
        if series.last().is_some_and(|prev| prev.id >= id) {
            return Err(format!("series {} not in id order", series.len()));
        }
        series.push(IndexedSeries { id, labels });
    }
    Ok(series)
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
        self.utf8(n)
    }

    fn utf8(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "label is not UTF-8".to_string())
    }

    /// A LEB128 varint (the chunk codec's) that fits in a `usize`.
    fn varint(&mut self) -> Result<usize, String> {
        let n = read_varint(self.buf, &mut self.pos).map_err(|e| format!("series index: {e}"))?;
        usize::try_from(n).map_err(|_| "length out of range".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p.iter().copied()).expect("labels")
    }

    /// Ids are the labels' own, in id order, as writers produce them (the
    /// name table derives ids on read).
    fn index() -> SegmentIndex {
        let mut series: Vec<IndexedSeries> = [
            labels(&[("__name__", "up"), ("job", "é\"\\\n")]),
            labels(&[("__name__", "up"), ("instance", "a:1"), ("job", "x")]),
            labels(&[("instance", "b:2"), ("job", "x")]),
            Labels::empty(),
        ]
        .into_iter()
        .map(|labels| IndexedSeries {
            id: labels.series_id(),
            labels,
        })
        .collect();
        series.sort_by_key(|s| s.id);
        SegmentIndex {
            min_time: -5,
            max_time: i64::MAX,
            samples: 3,
            series,
        }
    }

    const LAYOUTS: [Layout; 2] = [Layout::WithIds, Layout::NameTable];

    #[test]
    fn round_trips() {
        for layout in LAYOUTS {
            let i = index();
            assert_eq!(decode(&encode(&i, layout), layout), Ok(i), "{layout:?}");
        }
    }

    #[test]
    fn the_name_table_stores_each_name_once_and_no_ids() {
        let i = index();
        let table = encode(&i, Layout::NameTable);
        let with_ids = encode(&i, Layout::WithIds);
        let count =
            |buf: &[u8], needle: &[u8]| buf.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count(&table, b"instance"), 1);
        assert_eq!(count(&with_ids, b"instance"), 2);
        let id = i.series[0].id.to_le_bytes();
        assert_eq!((count(&table, &id), count(&with_ids, &id)), (0, 1));
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        for layout in LAYOUTS {
            let bytes = encode(&index(), layout);
            for n in 0..bytes.len() {
                assert!(
                    decode(&bytes[..n], layout).is_err(),
                    "{layout:?} truncated at {n}"
                );
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(decode(&extra, layout).is_err());
            // A huge series count is refused without allocating for it.
            let mut huge = bytes.clone();
            huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(decode(&huge, layout).is_err());
            // A label that is not UTF-8, and labels out of order, are refused.
            let two = SegmentIndex {
                series: vec![IndexedSeries {
                    id: 1,
                    labels: labels(&[("a", "1"), ("b", "2")]),
                }],
                ..index()
            };
            let good = encode(&two, layout);
            let at = |needle: u8| good.iter().rposition(|&b| b == needle).expect("byte");
            let (name_a, name_b) = (at(b'a'), at(b'b'));
            let mut not_utf8 = good.clone();
            not_utf8[name_a] = 0xff;
            assert!(decode(&not_utf8, layout).unwrap_err().contains("UTF-8"));
            let mut unsorted = good.clone();
            unsorted.swap(name_a, name_b);
            assert!(
                decode(&unsorted, layout)
                    .unwrap_err()
                    .contains("not sorted"),
                "{layout:?}"
            );
        }
    }

    #[test]
    fn the_name_table_refuses_unknown_names_and_series_out_of_id_order() {
        let one = |p: &[(&str, &str)]| {
            let labels = labels(p);
            IndexedSeries {
                id: labels.series_id(),
                labels,
            }
        };
        let single = SegmentIndex {
            series: vec![one(&[("a", "1")])],
            ..index()
        };
        // header 28 | names u32 1 | "a" (len 1) | labels 1 | name 0 | "1" (len 1)
        let mut bad_ref = encode(&single, Layout::NameTable);
        assert_eq!(bad_ref[34..], [1, 0, 1, b'1']);
        bad_ref[35] = 1;
        assert!(
            decode(&bad_ref, Layout::NameTable)
                .unwrap_err()
                .contains("label name 1 of 1")
        );
        let mut swapped = SegmentIndex {
            series: vec![one(&[("a", "1")]), one(&[("a", "2")])],
            ..index()
        };
        swapped.series.sort_by_key(|s| std::cmp::Reverse(s.id));
        let err = decode(&encode(&swapped, Layout::NameTable), Layout::NameTable).unwrap_err();
        assert!(err.contains("not in id order"), "{err}");
    }
}
