"""ctypes access to libtdeploy's session API, so one Python process (one CUDA
context) runs every GPU test case instead of one tdeploy process per case."""
import ctypes as C
import os

import numpy as np

DT = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16, 16: np.uint16}
NP2DT = {np.dtype(np.int64): 7, np.dtype(np.int32): 6, np.dtype(np.float32): 1, np.dtype(np.float16): 10}


class Options(C.Structure):
    _fields_ = [("threads", C.c_int), ("precision", C.c_int), ("backend", C.c_char_p)]


class Output(C.Structure):
    _fields_ = [("name", C.c_char_p), ("dtype", C.c_int32), ("rank", C.c_int), ("shape", C.POINTER(C.c_int64)),
                ("data", C.c_void_p), ("nbytes", C.c_size_t)]


class Stats(C.Structure):
    _fields_ = [("arena_bytes", C.c_size_t), ("arena_naive_bytes", C.c_size_t), ("hoisted_bytes", C.c_size_t),
                ("weight_bytes", C.c_size_t), ("plans", C.c_uint64), ("runs", C.c_uint64), ("nodes", C.c_int),
                ("hoisted_nodes", C.c_int), ("fused_nodes", C.c_int), ("device_ms", C.c_double)]


class Lib:
    def __init__(self, path):
        self.l = C.CDLL(path)
        l = self.l
        l.td_ctx_new.restype = C.c_void_p
        l.td_error_message.restype = C.c_char_p
        l.td_error_message.argtypes = [C.c_void_p]
        l.td_session_create_file.argtypes = [C.c_void_p, C.c_char_p, C.POINTER(Options), C.POINTER(C.c_void_p)]
        l.td_session_free.argtypes = [C.c_void_p]
        l.td_session_input_count.argtypes = [C.c_void_p]
        l.td_session_input_name.argtypes = [C.c_void_p, C.c_int]
        l.td_session_input_name.restype = C.c_char_p
        l.td_session_output_count.argtypes = [C.c_void_p]
        l.td_session_set_input.argtypes = [C.c_void_p, C.c_void_p, C.c_char_p, C.c_int32, C.c_int,
                                           C.POINTER(C.c_int64), C.c_void_p, C.c_size_t]
        l.td_session_run.argtypes = [C.c_void_p, C.c_void_p]
        l.td_session_get_output.argtypes = [C.c_void_p, C.c_void_p, C.c_int, C.POINTER(Output)]
        l.td_session_get_stats.argtypes = [C.c_void_p, C.POINTER(Stats)]
        l.td_model_file_open.argtypes = [C.c_void_p, C.c_char_p, C.POINTER(C.c_void_p)]
        l.td_session_create_shared.argtypes = [C.c_void_p, C.c_void_p, C.POINTER(Options), C.POINTER(C.c_void_p)]
        l.td_model_file_close.argtypes = [C.c_void_p]
        l.td_ctx_new.argtypes = []
        self.ctx = C.c_void_p(l.td_ctx_new())

    def err(self):
        return self.l.td_error_message(self.ctx).decode(errors="replace")


class ModelFile:
    """One loaded model/engine shared by several sessions (td_model_file_open)."""

    def __init__(self, lib, path):
        self.lib = lib
        self.h = C.c_void_p()
        if lib.l.td_model_file_open(lib.ctx, str(path).encode(), C.byref(self.h)) != 0:
            raise RuntimeError(lib.err())

    def close(self):
        self.lib.l.td_model_file_close(self.h)


class Session:
    def __init__(self, lib, path, backend="cpu", threads=0, shared=None, own_ctx=False):
        self.lib = lib
        opt = Options(threads, 0, backend.encode() if backend else None)
        h = C.c_void_p()
        if own_ctx:  # a td_ctx is per thread
            lib = self.lib = type("L", (), {"l": lib.l, "ctx": C.c_void_p(lib.l.td_ctx_new()),
                                            "err": lambda s: s.l.td_error_message(s.ctx).decode(errors="replace")})()
        if shared is not None:
            st = lib.l.td_session_create_shared(lib.ctx, shared.h, C.byref(opt), C.byref(h))
        else:
            st = lib.l.td_session_create_file(lib.ctx, str(path).encode(), C.byref(opt), C.byref(h))
        if st != 0:
            raise RuntimeError(lib.err())
        self.h = h
        self.inputs = [lib.l.td_session_input_name(h, i).decode() for i in range(lib.l.td_session_input_count(h))]

    def run(self, feeds):
        keep = []
        for name in self.inputs:
            a = np.ascontiguousarray(feeds[name])
            keep.append(a)
            shape = (C.c_int64 * max(a.ndim, 1))(*a.shape)
            st = self.lib.l.td_session_set_input(self.lib.ctx, self.h, name.encode(), NP2DT[a.dtype], a.ndim, shape,
                                                 a.ctypes.data, a.nbytes)
            if st != 0:
                raise RuntimeError(self.lib.err())
        if self.lib.l.td_session_run(self.lib.ctx, self.h) != 0:
            raise RuntimeError(self.lib.err())
        outs = {}
        for i in range(self.lib.l.td_session_output_count(self.h)):
            o = Output()
            if self.lib.l.td_session_get_output(self.lib.ctx, self.h, i, C.byref(o)) != 0:
                raise RuntimeError(self.lib.err())
            shape = tuple(o.shape[d] for d in range(o.rank))
            buf = (C.c_char * o.nbytes).from_address(o.data) if o.nbytes else b""
            arr = np.frombuffer(bytes(buf), dtype=DT[o.dtype]).reshape(shape)
            if o.dtype == 16:
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            outs[o.name.decode()] = arr.astype(np.float32) if o.dtype in (10, 16) else arr.copy()
        return outs

    def stats(self):
        s = Stats()
        self.lib.l.td_session_get_stats(self.h, C.byref(s))
        return s

    def close(self):
        if self.h:
            self.lib.l.td_session_free(self.h)
            self.h = None
