#!/usr/bin/env python3
"""Generate a corpus of bad ONNX inputs: each case is a directory holding
model.onnx (plus whatever external files it needs) and the keyword the error
message must contain. Used by test_bad_onnx.py and as fuzz seeds.

usage: gen_bad_onnx.py OUTDIR   (prints one line per case: name<TAB>keyword)
"""
import os
import shutil
import struct
import sys

import onnx
from onnx import TensorProto, helper


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def overlong(n, width):
    """n as a varint of exactly width bytes (zero-payload continuation bytes)."""
    out = bytearray()
    for i in range(width):
        out.append((n & 0x7F) | (0x80 if i + 1 < width else 0))
        n >>= 7
    assert n == 0
    return bytes(out)


def ld(tag, payload):
    """A length-delimited protobuf field."""
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def graph(nodes, inits=(), inputs=None, outputs=None):
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])]
    outputs = outputs if outputs is not None else [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]
    return helper.make_graph(nodes, "g", inputs, outputs, list(inits))


def model(g, opsets=(("", 17),), ir=8):
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = ir
    return m


def relu(i, o, name=None):
    return helper.make_node("Relu", [i], [o], name=name or f"relu_{o}")


def ok_model():
    return model(graph([relu("x", "y")]))


def tensor(name, dtype, dims, raw=None):
    t = TensorProto()
    t.name = name
    t.data_type = dtype
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    return t


def with_init(t):
    return model(graph([helper.make_node("Add", ["x", t.name], ["y"], name="add")], [t]))


def external_init(location, offset=None, length=None):
    t = tensor("w", TensorProto.FLOAT, [2])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return with_init(t)


def build(out):
    """Write every case under out/; returns [(name, keyword)]."""
    cases = []

    def case(name, keyword, data=None, proto=None, setup=None):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        if proto is not None:
            data = proto.SerializeToString()
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(data)
        if setup:
            setup(d)
        cases.append((name, keyword))

    good = ok_model().SerializeToString()
    case("empty_onnx", "empty", b"")
    case("truncated_onnx", "not a valid ONNX model", good[: len(good) // 2])
    case("garbage_onnx", "not a valid ONNX model", bytes((i * 37 + 11) % 256 for i in range(200)))
    case("wrong_wire_type_onnx", "not a valid ONNX model", b"\x08\x08" + b"\x3d\x01\x02\x03\x04")  # graph as fixed32
    case("huge_length_onnx", "not a valid ONNX model", b"\x08\x08\x3a" + varint(1 << 40) + b"\x0a\x01g")
    case("nested_huge_length_onnx", "not a valid ONNX model",
         b"\x08\x08\x3a\x08" + b"\x2a" + varint(1 << 33) + b"\x00\x00")
    # over-long varints beyond the parsers' limits (length prefixes 5 bytes, values 10)
    g_raw = ok_model().graph.SerializeToString()
    case("overlong_length_onnx", "not a valid ONNX model",
         b"\x08\x08\x3a" + overlong(len(g_raw), 6) + g_raw)
    case("overlong_value_onnx", "not a valid ONNX model",
         b"\x08" + overlong(8, 11) + ld(7, g_raw))
    case("no_graph_onnx", "no graph", b"\x08\x08")
    case("dims_mismatch_onnx", "raw_data has 12 bytes", proto=with_init(tensor("w", 1, [2], b"\0" * 12)))
    t = tensor("w", TensorProto.FLOAT, [2])
    t.float_data.extend([1.0, 2.0, 3.0])
    case("typed_count_mismatch_onnx", "float_data has 3 values", proto=with_init(t))
    t = tensor("w", TensorProto.INT64, [2])
    t.float_data.extend([1.0, 2.0])
    case("typed_field_wrong_dtype_onnx", "ONNX requires", proto=with_init(t))
    case("negative_dims_onnx", "negative dimension", proto=with_init(tensor("w", 1, [2, -3], b"")))
    case("dims_overflow_onnx", "overflow", proto=with_init(tensor("w", 1, [1 << 62, 1 << 62], b"")))
    case("huge_dims_no_data_onnx", "no data", proto=with_init(tensor("w", 1, [1 << 20, 1 << 20])))
    case("cyclic_onnx", "cycle",
         proto=model(graph([helper.make_node("Add", ["x", "b"], ["a"], name="n_a"), relu("a", "b", "n_b"),
                            relu("a", "y", "n_y")])))
    case("missing_producer_onnx", "no producer",
         proto=model(graph([helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")])))
    case("duplicate_output_onnx", "produced twice", proto=model(graph([relu("x", "y", "one"), relu("x", "y", "two")])))
    case("output_listed_twice_onnx", "lists output 'y' twice",
         proto=model(graph([helper.make_node("Split", ["x"], ["y", "z", "y"], name="split", num_outputs=3)])))
    case("output_overwrites_input_onnx", "SSA", proto=model(graph([relu("x", "y", "one"), relu("y", "x", "two")])))
    case("missing_opset_onnx", "opset_import", proto=model(graph([relu("x", "y")]), opsets=()))
    case("domain_without_opset_onnx", "no opset import",
         proto=model(graph([helper.make_node("Custom", ["x"], ["y"], name="custom", domain="com.example")])))
    case("bad_ir_version_onnx", "ir_version", proto=model(graph([relu("x", "y")]), ir=0))
    then_g = helper.make_graph([relu("nowhere", "t_out", "inner")], "then", [],
                               [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([relu("x", "e_out", "inner2")], "else", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2])])
    iff = helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g)
    case("subgraph_missing_producer_onnx", "no producer",
         proto=model(graph([iff], inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                          helper.make_tensor_value_info("c", TensorProto.BOOL, [])])))
    # nesting that would overflow protobuf-c's recursive unpack (it segfaulted before the depth check)
    g = b""
    for _ in range(3000):
        g = ld(1, ld(5, ld(6, g)))  # GraphProto.node -> NodeProto.attribute -> AttributeProto.g
    case("deep_subgraphs_onnx", "nests protobuf messages", b"\x08\x08" + ld(7, g) + ld(8, b"\x10\x11"))
    t = b""
    for _ in range(3000):
        t = ld(4, ld(1, t))  # TypeProto.sequence_type -> Sequence.elem_type
    vi = ld(1, b"x") + ld(2, t)
    case("deep_types_onnx", "nests protobuf messages", b"\x08\x08" + ld(7, ld(11, vi)) + ld(8, b"\x10\x11"))
    # external data
    case("external_dotdot_onnx", "'..'", proto=external_init("../outside.bin"))
    case("external_absolute_onnx", "absolute", proto=external_init("/etc/passwd"))
    case("external_missing_onnx", "No such file", proto=external_init("missing.bin"))

    def symlink_out(d):
        outside = os.path.join(out, "outside_target.bin")
        with open(outside, "wb") as f:
            f.write(b"\0" * 64)
        os.symlink(outside, os.path.join(d, "link.bin"))

    case("external_symlink_escape_onnx", "outside the model directory", proto=external_init("link.bin"),
         setup=symlink_out)

    def small_file(d):
        with open(os.path.join(d, "w.bin"), "wb") as f:
            f.write(b"\0" * 8)

    case("external_past_eof_onnx", "past the end", proto=external_init("w.bin", offset=4, length=8), setup=small_file)
    case("external_offset_overflow_onnx", "past the end",
         proto=external_init("w.bin", offset=(1 << 64) - 4, length=8), setup=small_file)
    case("external_bad_offset_onnx", "not a non-negative integer", proto=external_init("w.bin", offset=-4),
         setup=small_file)
    case("external_length_mismatch_onnx", "does not match", proto=external_init("w.bin", length=4), setup=small_file)
    case("external_directory_onnx", "not a regular file", proto=external_init("sub"),
         setup=lambda d: os.mkdir(os.path.join(d, "sub")))
    case("external_fifo_onnx", "not a regular file", proto=external_init("pipe"),
         setup=lambda d: os.mkfifo(os.path.join(d, "pipe")))
    case("external_no_location_onnx", "without a 'location'", proto=external_init(None))
    return cases


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = sys.argv[1]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name, kw in build(out):
        print(f"{name}\t{kw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
