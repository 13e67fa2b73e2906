//! Initializer data read in place from the model file (src/onnx/inline.rs) gives exactly what
//! an ordinary protobuf decode gives: on the fixture ResNets, on payloads at every alignment,
//! and with a `raw_data` field repeated (protobuf: the last occurrence wins).

mod common;

use common::build::*;
use common::*;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use tract_onnx::pb;

/// Every float initializer of the file at `path`, as an ordinary decode reads it.
fn decoded_floats(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let proto = pb::ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap();
    let g = proto.graph.unwrap();
    let floats =
        |t: &pb::TensorProto| t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    g.initializer.iter().filter(|t| t.data_type == 1).map(|t| (t.name.clone(), floats(t))).collect()
}

fn loaded(path: &std::path::Path) -> Vec<(String, edgetune::Tensor)> {
    let m = edgetune::onnx::load(path).unwrap();
    m.graph
        .initializers
        .iter()
        .filter_map(|i| match &i.data {
            edgetune::graph::Const::F32(t) => Some((i.name.clone(), t.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn fixture_resnets_load_the_bytes_an_ordinary_decode_reads() {
    for name in ["resnet18_bn_op17", "resnet20_cifar"] {
        let path = fixtures().join(format!("models/{name}.onnx"));
        let want = decoded_floats(&path);
        let got = loaded(&path);
        assert_eq!(got.len(), want.len(), "{name}");
        for ((gn, g), (wn, w)) in got.iter().zip(&want) {
            assert_eq!(gn, wn);
            assert!(g.data() == &w[..], "{name}: {gn} differs");
        }
    }
}

#[test]
fn payloads_at_every_alignment_view_or_copy() {
    let dir = tempfile::tempdir().unwrap();
    let w: Vec<f32> = (0..4 * 3 * 9).map(|i| i as f32 * 0.25 - 3.0).collect();
    let mut mapped = 0;
    // A graph name of 1..=4 bytes (encoded before the initializers) moves the payload through
    // every offset modulo 4.
    for pad in 1..=4 {
        let mut m = conv_relu();
        let g = m.graph.as_mut().unwrap();
        g.name = "g".repeat(pad);
        g.initializer = vec![floats("w", &[4, 3, 3, 3], &w)];
        let path = dir.path().join(format!("m{pad}.onnx"));
        save(&m, &path);
        let got = loaded(&path);
        assert_eq!(got[0].1.data(), &w[..], "name length {pad}");
        mapped += got[0].1.is_mapped() as usize;
    }
    assert_eq!(mapped, 1, "exactly one of four offsets is 4-byte aligned and viewed in place");
}

#[test]
fn a_repeated_raw_data_field_keeps_the_last_occurrence() {
    let (first, last): (Vec<f32>, Vec<f32>) =
        ((0..108).map(|i| i as f32).collect(), (0..108).map(|i| -(i as f32)).collect());
    let mut m = conv_relu();
    let mut g = m.graph.take().unwrap();
    let w = g.initializer.remove(0);
    let mut tensor = floats(&w.name, &[4, 3, 3, 3], &first).encode_to_vec();
    // Concatenated encodings merge: a second message holding only raw_data overrides it.
    tensor.extend(
        pb::TensorProto { raw_data: last.iter().flat_map(|v| v.to_le_bytes()).collect(), ..Default::default() }
            .encode_to_vec(),
    );
    let mut graph = g.encode_to_vec();
    encode_key(5, WireType::LengthDelimited, &mut graph);
    encode_varint(tensor.len() as u64, &mut graph);
    graph.extend(&tensor);
    let mut bytes = m.encode_to_vec();
    encode_key(7, WireType::LengthDelimited, &mut bytes);
    encode_varint(graph.len() as u64, &mut bytes);
    bytes.extend(&graph);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.onnx");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(decoded_floats(&path)[0].1, last, "prost itself keeps the last occurrence");
    assert_eq!(loaded(&path)[0].1.data(), &last[..]);
}
