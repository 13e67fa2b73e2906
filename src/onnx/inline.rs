//! Initializer data read in place from the mapped model file. Decoding a ModelProto with prost
//! copies every `raw_data` field into a fresh Vec (for ResNet-50, 100 MB, most of the load time
//! in page faults), and the floats are then copied once more out of it. Instead:
//! 1. a decode with message types that keep only the top-level initializers' `raw_data`, as
//!    `Bytes` slices of the map (no copy), locates each payload in the file;
//! 2. in a private copy-on-write map, each of those fields' key byte is changed to a field number
//!    TensorProto does not use, so the full decode skips the payloads (writing one page each);
//! 3. the initializers then view their floats in the read-only map, or copy them once where the
//!    payload is not 4-byte aligned.
//!
//! Anything unusual (a field that does not decode, a non-minimal length prefix) leaves that field
//! to the ordinary decode, which copies it and reports errors as before.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// The key byte of TensorProto.raw_data (field 9, length-delimited) and its replacement: field
/// 15, length-delimited, unknown to TensorProto, so prost skips it.
const RAW_DATA_KEY: u8 = (9 << 3) | 2;
const HIDDEN_KEY: u8 = (15 << 3) | 2;

#[derive(Clone, PartialEq, prost::Message)]
struct SlimModel {
    #[prost(message, optional, tag = "7")]
    graph: Option<SlimGraph>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SlimGraph {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<SlimTensor>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SlimTensor {
    #[prost(bytes = "bytes", tag = "9")]
    raw_data: bytes::Bytes,
}

/// `Bytes` over the shared map.
struct Shared(Arc<Mmap>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where each top-level initializer's raw data lies in the model file (by initializer index;
/// `None`: left to the ordinary decode).
pub struct InlineData {
    pub map: Arc<Mmap>,
    pub ranges: Vec<Option<Range<usize>>>,
}

impl InlineData {
    /// The map and the byte range of initializer `i`'s payload, when it was located.
    pub fn get(&self, i: usize) -> Option<(&Arc<Mmap>, Range<usize>)> {
        self.ranges.get(i)?.clone().map(|r| (&self.map, r))
    }
}

/// The bytes to decode (the file with located raw_data fields hidden) and where they are; `None`
/// when nothing was located (decode the plain map then).
pub fn locate(file: &File, map: &Arc<Mmap>) -> Option<(MmapMut, InlineData)> {
    let slim = SlimModel::decode_from(map)?;
    let base = map.as_ptr() as usize;
    let ranges: Vec<Option<Range<usize>>> = slim
        .graph
        .map(|g| g.initializer)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let start = (t.raw_data.as_ptr() as usize).checked_sub(base)?;
            let range = start..start + t.raw_data.len();
            // Always inside the map (prost slices it); checked so that a prost that copied
            // instead could never make us index past it.
            if range.end > map.len() {
                return None;
            }
            (!t.raw_data.is_empty() && key_offset(map, &range).is_some()).then_some(range)
        })
        .collect();
    if ranges.iter().all(Option::is_none) {
        return None;
    }
    // SAFETY: a private copy-on-write map: our writes never reach the file; as with any map, a
    // file truncated by another process while mapped is outside what we can defend against.
    let mut cow = unsafe { MmapOptions::new().map_copy(file) }.ok()?;
    for r in ranges.iter().flatten() {
        cow[key_offset(map, r)?] = HIDDEN_KEY;
    }
    Some((cow, InlineData { map: map.clone(), ranges }))
}

impl SlimModel {
    fn decode_from(map: &Arc<Mmap>) -> Option<SlimModel> {
        use prost::Message;
        SlimModel::decode(bytes::Bytes::from_owner(Shared(map.clone()))).ok()
    }
}

/// The offset of the key byte of the raw_data field whose payload is `payload`: it precedes the
/// minimal varint of the payload's length. `None` if the bytes there are anything else.
fn key_offset(file: &[u8], payload: &Range<usize>) -> Option<usize> {
    let mut len = Vec::with_capacity(10);
    let mut n = payload.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            len.push(byte);
            break;
        }
        len.push(byte | 0x80);
    }
    let key = payload.start.checked_sub(len.len() + 1)?;
    (file[key] == RAW_DATA_KEY && file[key + 1..payload.start] == len[..]).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_precedes_a_minimal_length() {
        // key 0x4a, length 300 = varint [0xac, 0x02], then the payload.
        let mut file = vec![0u8, RAW_DATA_KEY, 0xac, 0x02];
        file.extend(std::iter::repeat_n(7u8, 300));
        assert_eq!(key_offset(&file, &(4..304)), Some(1));
        // A padded (non-minimal) length prefix is left to the ordinary decode.
        let padded = [RAW_DATA_KEY, 0x83, 0x80, 0x00, 1, 2, 3];
        assert_eq!(key_offset(&padded, &(4..7)), None);
        // Another field's bytes are not touched.
        let other = [(4 << 3) | 2, 3, 1, 2, 3];
        assert_eq!(key_offset(&other, &(2..5)), None);
    }
}
