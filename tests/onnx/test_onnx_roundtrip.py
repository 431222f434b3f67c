#!/usr/bin/env python3
"""ONNX round trip through `tdeploy onnx-save`, judged by onnx and ONNX Runtime.

For every $TD_FIXTURES/onnx/*.onnx:
  - load -> save gives a ModelProto equal to the original (onnx.load(a) == onnx.load(b));
  - onnx.checker.check_model(full_check=True) passes on the output wherever it passes on the input;
  - ONNX Runtime (CPU) gives bit-identical outputs for original and round-tripped models on the golden
    inputs ($TD_FIXTURES/hf/<name>/golden.safetensors, tensors `input.<name>`);
  - saved with external data (--external-data), loaded back by onnx/ORT (identical outputs) and by tdeploy
    (saving it inline again gives a proto equal to the original).
Every model.onnx of the libonnx-testdata node tests is round-tripped too (proto equality).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

FIX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
TMP = os.environ.get("TD_TMP", "/tmp")
BIN = os.environ.get("TD_BIN", "")
failures = []


def report(ok, name, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}")
    if not ok:
        failures.append(name)


def run_save(src, dst, *extra):
    r = subprocess.run([BIN, "onnx-save", "-q", src, "-o", dst, *extra], capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or f"exit {r.returncode}"
    return None


def checker_ok(model_or_path):
    try:
        onnx.checker.check_model(model_or_path, full_check=True)
        return True
    except Exception:  # noqa: BLE001 - any checker failure counts
        return False


def ort_outputs(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = dict(feeds)
    ids = feeds.get("input_ids")
    for i in sess.get_inputs():
        if i.name in feeds or ids is None:
            continue
        if i.name.startswith("past_key_values."):
            # KV-cache decoders (Optimum's layout): the prefill step has an empty past,
            # (batch, kv_heads, 0, head_dim); the head dims are fixed in these exports.
            feeds[i.name] = np.zeros((ids.shape[0], i.shape[1], 0, i.shape[3]), dtype=np.float32)
        elif i.name == "position_ids":
            mask = feeds.get("attention_mask", np.ones_like(ids))
            feeds[i.name] = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int64)
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: feeds[n] for n in names})


def same_outputs(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b))


def fixture_cases(work):
    onnx_dir = os.path.join(FIX, "onnx")
    files = sorted(f for f in os.listdir(onnx_dir) if f.endswith(".onnx"))
    report(len(files) > 0, "fixtures present", onnx_dir)
    for f in files:
        src = os.path.join(onnx_dir, f)
        name = f.split(".")[0]
        out = os.path.join(work, f)
        err = run_save(src, out)
        report(err is None, f"{f}: onnx-save", err or "")
        if err:
            continue
        orig = onnx.load(src)
        report(onnx.load(out) == orig, f"{f}: proto equal after round trip")
        if checker_ok(src):
            report(checker_ok(out), f"{f}: checker full_check on output")
        golden = os.path.join(FIX, "hf", name, "golden.safetensors")
        feeds = {}
        if os.path.exists(golden):
            g = load_file(golden)
            feeds = {k[len("input."):]: v for k, v in g.items() if k.startswith("input.")}
        report(bool(feeds), f"{f}: golden inputs found", golden)
        if not feeds:
            continue
        ref = ort_outputs(src, feeds)
        report(same_outputs(ref, ort_outputs(out, feeds)), f"{f}: ORT outputs bit-identical (inline)")
        # external data
        ext_dir = os.path.join(work, name + "_ext")
        os.makedirs(ext_dir, exist_ok=True)
        ext = os.path.join(ext_dir, "model.onnx")
        err = run_save(src, ext, "--external-data", "--external-threshold", "1024")
        report(err is None and os.path.exists(ext + ".data"), f"{f}: save with external data", err or "")
        if err:
            continue
        n_ext = sum(1 for t in onnx.load(ext, load_external_data=False).graph.initializer
                    if t.data_location == onnx.TensorProto.EXTERNAL)
        report(n_ext > 0, f"{f}: initializers stored externally", str(n_ext))
        report(checker_ok(ext), f"{f}: checker full_check on external-data model")
        m_ext_inline = onnx.load(ext)
        for t in m_ext_inline.graph.initializer:  # onnx.load marks loaded external tensors DEFAULT explicitly
            if t.HasField("data_location") and t.data_location == onnx.TensorProto.DEFAULT:
                t.ClearField("data_location")
        report(m_ext_inline == orig, f"{f}: external-data model equals original apart from layout")
        report(same_outputs(ref, ort_outputs(ext, feeds)), f"{f}: ORT outputs bit-identical (external data)")
        # external data written by onnx itself (unaligned offsets, no explicit length for small files)
        py_dir = os.path.join(work, name + "_pyext")
        os.makedirs(py_dir, exist_ok=True)
        py_ext = os.path.join(py_dir, "model.onnx")
        onnx.save_model(onnx.load(src), py_ext, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=1024)
        py_back = os.path.join(work, name + "_pyback.onnx")
        err = run_save(py_ext, py_back, "--no-external-data")
        report(err is None and onnx.load(py_back) == orig, f"{f}: tdeploy reads onnx-written external data", err or "")
        back = os.path.join(work, name + "_back.onnx")
        err = run_save(ext, back, "--no-external-data")
        report(err is None and onnx.load(back) == orig, f"{f}: tdeploy reads external data back", err or "")


def synthetic_model():
    """Everything the IR does not model: functions, training_info, sparse initializers, quantization annotations,
    non-tensor types, dim denotations, odd dims, attribute type protos and sparse tensors, typed data fields,
    int4, segments, explicit DEFAULT data_location, unknown fields on a node and on the model."""
    from onnx import TensorProto, helper, numpy_helper

    def with_unknown(msg, extra):
        m = type(msg)()
        m.ParseFromString(msg.SerializeToString() + extra)
        return m

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    x.type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    odd = helper.make_tensor_value_info("odd", TensorProto.FLOAT, [2])
    odd.type.tensor_type.shape.dim[0].dim_value = -5
    n1 = with_unknown(helper.make_node("Add", ["x", "w"], ["t"], name="add", doc_string="adds"),
                      b"\xf8\x07\x05")  # unknown field 127 (varint 5)
    n2 = helper.make_node("MyFunc", ["t"], ["y"], name="call", domain="custom.fn")
    n3 = helper.make_node("Identity", ["t"], ["odd"], name="id")
    a = n3.attribute.add()
    a.name, a.type = "type_attr", onnx.AttributeProto.TYPE_PROTO
    a.tp.CopyFrom(x.type)
    sp = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5, 2.5], np.float32), "vals"),
                                   numpy_helper.from_array(np.array([0, 3], np.int64), "idx"), [4])
    a = n3.attribute.add()
    a.name, a.type = "sparse", onnx.AttributeProto.SPARSE_TENSOR
    a.sparse_tensor.CopyFrom(sp)
    a = helper.make_attribute("f_no_value", 0.0)
    a.ClearField("f")
    n3.attribute.append(a)
    f16 = np.array([1.0, -2.0], np.float16).view(np.uint16).tolist()
    h = helper.make_tensor("h", TensorProto.FLOAT16, [2], f16)
    h.ClearField("int32_data")
    h.int32_data.extend(f16)
    i4 = TensorProto(name="i4", data_type=TensorProto.INT4, dims=[3], raw_data=b"\x12\x03")
    seg = helper.make_tensor("seg", TensorProto.FLOAT, [1], [4.0])
    seg.segment.begin, seg.segment.end = 0, 1
    loc = numpy_helper.from_array(np.zeros(2, np.float32), "loc")
    loc.data_location = TensorProto.DEFAULT
    empty = TensorProto(name="empty", data_type=TensorProto.FLOAT, dims=[0], raw_data=b"")
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]), h,
             helper.make_tensor("i8", TensorProto.INT8, [3], [-1, 5, -128]),
             helper.make_tensor("u32", TensorProto.UINT32, [2], [1, 4000000000]),
             helper.make_tensor("strs", TensorProto.STRING, [2], [b"a", b"b\x00c"]),
             helper.make_tensor("c64", TensorProto.COMPLEX64, [1], [1 + 2j]), i4, seg, loc, empty]
    g = helper.make_graph([n1, n2, n3], "synth", [x, seq], [y, odd], inits, doc_string="graph doc")
    g.sparse_initializer.append(sp)
    qa = g.quantization_annotation.add()
    qa.tensor_name = "t"
    e = qa.quant_parameter_tensor_names.add()
    e.key, e.value = "SCALE_TENSOR", "w"
    g.value_info.append(helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", 3]))
    fn = helper.make_function("custom.fn", "MyFunc", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.fn", 1)],
                          functions=[fn], producer_name="synth", doc_string="model doc", model_version=3)
    helper.set_model_props(m, {"k1": "v1", "k2": "v2"})
    m.training_info.add().algorithm.name = "alg"
    m = with_unknown(m, b"\xa8\x3e\x2a")  # unknown field 1001 (varint 42)
    return m


def synthetic_case(work):
    src = os.path.join(work, "synthetic.onnx")
    out = os.path.join(work, "synthetic_rt.onnx")
    onnx.save(synthetic_model(), src)
    err = run_save(src, out)
    report(err is None, "synthetic: onnx-save", err or "")
    if err:
        return
    a, b = onnx.load(src), onnx.load(out)
    report(a == b, "synthetic: proto equal (unmodelled fields kept)")
    report(a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True),
           "synthetic: deterministic serializations equal (unknown fields kept)")
    data = open(out, "rb").read()
    report(b"\xf8\x07\x05" in data and b"\xa8\x3e\x2a" in data, "synthetic: unknown fields present in output")


def split_graph_case(work):
    """ModelProto.graph given twice (protobuf merges them): the zero-copy splitter declines and the plain
    protobuf-c path must load the same model."""
    src = os.path.join(FIX, "onnx", "bert-base.torchscript.onnx")
    m = onnx.load(src)
    g1, g2 = onnx.GraphProto(), onnx.GraphProto()
    g1.CopyFrom(m.graph)
    del g1.initializer[9:]
    del g1.node[100:]
    g2.initializer.extend(m.graph.initializer[9:])
    g2.node.extend(m.graph.node[100:])
    rest = onnx.ModelProto()
    rest.CopyFrom(m)
    rest.ClearField("graph")

    def field7(payload):
        n, out = len(payload), bytearray(b"\x3a")
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out) + payload

    merged = os.path.join(work, "merged_graph.onnx")
    with open(merged, "wb") as f:
        f.write(rest.SerializeToString() + field7(g1.SerializeToString()) + field7(g2.SerializeToString()))
    out = os.path.join(work, "merged_graph_rt.onnx")
    err = run_save(merged, out)
    report(err is None and onnx.load(out) == m, "graph split over two fields loads via protobuf-c", err or "")


def testdata_cases(work):
    r = subprocess.run(["dpkg", "-L", "libonnx-testdata"], capture_output=True, text=True)
    files = [p for p in r.stdout.split() if p.endswith("/model.onnx")]
    report(len(files) > 0, "libonnx-testdata models present")
    bad = []
    # 1072 atomic saves are 2144 fsyncs: on a disk that is most of the test's time, on tmpfs none of it
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        work = tempfile.mkdtemp(prefix="td_onnx_testdata_", dir=shm)
    pairs = [(src, os.path.join(work, f"td_{i}.onnx")) for i, src in enumerate(files)]
    lst = os.path.join(work, "testdata_batch.txt")
    with open(lst, "w") as f:
        f.writelines(f"{a}\t{b}\n" for a, b in pairs)
    r = subprocess.run([BIN, "onnx-save", "-q", "--batch", lst], capture_output=True, text=True)
    if r.returncode != 0:
        bad.append("batch: " + r.stderr.strip()[:500])
    for src, out in pairs:
        if not os.path.exists(out) or onnx.load(src) != onnx.load(out):
            bad.append(f"{src}: {'missing output' if not os.path.exists(out) else 'proto differs'}")
        elif os.path.exists(out):
            os.remove(out)
    if work.startswith(shm):
        shutil.rmtree(work, ignore_errors=True)
    report(not bad, f"libonnx-testdata: {len(files) - len(bad)}/{len(files)} node-test models round-trip exactly",
           "; ".join(bad[:5]))


def main():
    if not FIX or not BIN:
        print("FAIL: TD_FIXTURES and TD_BIN must be set")
        return 1
    work = os.path.join(TMP, "onnx_roundtrip")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    synthetic_case(work)
    fixture_cases(work)
    split_graph_case(work)
    testdata_cases(work)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
