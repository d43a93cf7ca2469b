//! The framing of streamed remote read answers
//! (`application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse`):
//!
//! ```text
//! frame := uvarint(len(message)) | u32 big-endian CRC32-Castagnoli(message) | message
//! ```
//!
//! Each message is one protobuf `ChunkedReadResponse`.

use bytes::{BufMut, Bytes, BytesMut};

/// Frames one encoded message.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 14);
    let mut len = message.len() as u64;
    while len >= 0x80 {
        out.put_u8((len as u8) | 0x80);
        len >>= 7;
    }
    out.put_u8(len as u8);
    out.put_u32(crc32c::crc32c(message));
    out.put_slice(message);
    out.freeze()
}

/// Why a framed stream could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame {index}: bad length prefix")]
    Length { index: usize },
    #[error("frame {index}: {len} bytes exceed the limit of {limit}")]
    TooLarge {
        index: usize,
        len: u64,
        limit: usize,
    },
    #[error("frame {index}: stream ends inside the frame")]
    Truncated { index: usize },
    #[error("frame {index}: checksum {got:#010x}, expected {want:#010x}")]
    Checksum { index: usize, got: u32, want: u32 },
}

/// Splits a whole framed stream into its messages, checking every checksum.
/// Frames above `limit` bytes are refused, as Prometheus' reader does.
pub fn unframe(mut data: &[u8], limit: usize) -> Result<Vec<&[u8]>, FrameError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let index = out.len();
        let mut len = 0u64;
        let mut used = 0;
        loop {
            let b = *data.get(used).ok_or(FrameError::Length { index })?;
            if used >= 10 {
                return Err(FrameError::Length { index });
            }
            len |= u64::from(b & 0x7f) << (7 * used);
            used += 1;
            if b < 0x80 {
                break;
            }
        }
        if len > limit as u64 {
            return Err(FrameError::TooLarge { index, len, limit });
        }
        let len = len as usize;
        let rest = &data[used..];
        let (crc, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(FrameError::Truncated { index })?;
        let message = rest.get(..len).ok_or(FrameError::Truncated { index })?;
        let want = u32::from_be_bytes(*crc);
        let got = crc32c::crc32c(message);
        if got != want {
            return Err(FrameError::Checksum { index, got, want });
        }
        out.push(message);
        data = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C (RFC 3720 / iSCSI).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn frames_round_trip_and_layout() {
        let a = vec![7u8; 300];
        let mut stream = Vec::new();
        stream.extend_from_slice(&frame(b"abc"));
        stream.extend_from_slice(&frame(&a));
        // 3 -> one length byte; 300 -> 0xac 0x02.
        assert_eq!(stream[0], 3);
        assert_eq!(&stream[1..5], &crc32c::crc32c(b"abc").to_be_bytes());
        assert_eq!(&stream[5..8], b"abc");
        assert_eq!(&stream[8..10], &[0xac, 0x02]);
        let got = unframe(&stream, 1 << 20).expect("unframe");
        assert_eq!(got, vec![&b"abc"[..], &a[..]]);
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let mut stream = frame(b"hello").to_vec();
        assert!(matches!(
            unframe(&stream, 3),
            Err(FrameError::TooLarge { index: 0, .. })
        ));
        assert_eq!(
            unframe(&stream[..stream.len() - 1], 100),
            Err(FrameError::Truncated { index: 0 })
        );
        let last = stream.len() - 1;
        stream[last] ^= 1;
        assert!(matches!(
            unframe(&stream, 100),
            Err(FrameError::Checksum { index: 0, .. })
        ));
        assert_eq!(unframe(&[0x80], 100), Err(FrameError::Length { index: 0 }));
        assert_eq!(
            unframe(&[0xff; 12], 100),
            Err(FrameError::Length { index: 0 })
        );
    }
}
