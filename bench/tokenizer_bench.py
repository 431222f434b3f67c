#!/usr/bin/env python3
"""Tokenizer throughput: tdeploy vs the HF `tokenizers` library, single-threaded.

Both encode the same lines in batches (encode_batch with RAYON_NUM_THREADS=1 and
TOKENIZERS_PARALLELISM=false for HF; `td_tok_tool bench` (built beside tdeploy) for tdeploy, which
calls td_tokenizer_encode_batch), special tokens added, padding to the longest
row of each batch, no truncation. Each side runs --repeat times; medians are
reported (load time excluded on both sides). Times are process CPU time
(time.process_time() for HF, CLOCK_PROCESS_CPUTIME_ID in tdeploy): both sides are
single-threaded, and CPU time stays meaningful on a machine shared with other jobs.
Equal work: each side's timed loop is the batch-encode call per batch and nothing else that the other side
does not do (HF: tok.encode_batch, whose Encodings hold ids, type ids, attention and special-tokens masks,
offsets and token strings; tdeploy: td_tokenizer_encode_batch, which returns ids, type ids, attention and
special-tokens masks and offsets, then sums its attention mask in C and frees the batch). The HF side counts
tokens in an untimed extra pass (summing attention_mask lists in Python used to sit inside it and cost HF time
tdeploy did not pay). Token counts are compared so a fast-but-wrong result cannot pass unnoticed. Reported:
the median of --repeat runs and the range (min-max) of the runs for both sides.

Tokenizers: WordPiece (BERT-style) and byte-level BPE (GPT-2/RoBERTa-style)
trained here with realistic vocabulary sizes (30k / 50k) on text from Python's
standard library sources, plus the tiny fixture tokenizers (bert-base,
roberta-seqcls, xlmr-base) when TD_FIXTURES is present.

usage: bench/tokenizer_bench.py [--tdeploy build/tdeploy] [--lines 20000] [--batch 64] [--repeat 5]
"""
import argparse
import glob
import os
import platform
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402


def corpus_lines():
    lines = []
    for f in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        try:
            with open(f, encoding="utf-8") as fh:
                lines.extend(s.strip() for s in fh if len(s.strip()) > 20)
        except (UnicodeDecodeError, OSError):
            pass
    random.Random(0).shuffle(lines)
    return lines


def train_wordpiece(train_lines):
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.train_from_iterator(train_lines, trainers.WordPieceTrainer(
        vocab_size=30000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", t.token_to_id("[CLS]")), ("[SEP]", t.token_to_id("[SEP]"))])
    t.decoder = decoders.WordPiece()
    return t


def train_bytelevel(train_lines):
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.train_from_iterator(train_lines, trainers.BpeTrainer(
        vocab_size=50000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    t.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    t.decoder = decoders.ByteLevel()
    return t


def bench_hf(tok_path, lines, batch, repeat):
    tok = Tokenizer.from_file(tok_path)
    tok.no_truncation()
    pad_id = tok.padding["pad_id"] if tok.padding else 0
    tok.enable_padding(pad_id=pad_id)
    batches = [lines[i:i + batch] for i in range(0, len(lines), batch)]
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        for b in batches:
            tok.encode_batch(b)  # encoded and freed, as tdeploy encodes and frees each batch
        times.append(time.process_time() - t0)
    ntok = sum(sum(e.attention_mask) for b in batches for e in tok.encode_batch(b))  # an untimed extra pass
    return times, ntok


def bench_td(tdeploy, model_dir, text_path, batch, repeat):
    # the bench mode lives in the test tool beside the binary (tests/tools/td_tok_tool.c), not in tdeploy
    tool = os.path.join(os.path.dirname(tdeploy), "td_tok_tool")
    p = subprocess.run([tool, "bench", model_dir, text_path, "--batch", str(batch), "--repeat", str(repeat)],
                       capture_output=True, text=True, check=True)
    times, ntok = [], 0
    for line in p.stdout.splitlines():
        if line.startswith("run "):
            times.append(float(line.split(":")[1].split()[0]))
        elif line.startswith("lines "):
            ntok = int(line.split()[3])
    return times, ntok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tdeploy", default=os.environ.get("TD_BIN", "build/tdeploy"))
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    lines = corpus_lines()
    bench_lines = lines[:args.lines]
    train_lines = lines[args.lines:]
    work = tempfile.mkdtemp(prefix="tokbench-")
    text_path = os.path.join(work, "bench.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write("\n".join(bench_lines))
    cases = []
    for name, fn in (("wordpiece-30k (bert-style)", train_wordpiece), ("bytelevel-bpe-50k (roberta-style)",
                                                                       train_bytelevel)):
        d = os.path.join(work, name.split()[0])
        os.makedirs(d, exist_ok=True)
        fn(train_lines).save(os.path.join(d, "tokenizer.json"))
        cases.append((name, d))
    fx = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    for m in ("bert-base", "roberta-seqcls", "xlmr-base"):
        d = os.path.join(fx, "hf", m)
        if os.path.exists(os.path.join(d, "tokenizer.json")):
            cases.append((f"fixture {m} (vocab 1k)", d))
    nbytes = sum(len(s.encode()) for s in bench_lines)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; python {platform.python_version()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"input: {len(bench_lines)} lines, {nbytes / 1e6:.2f} MB (Python stdlib source lines), batch {args.batch}, "
          f"median of {args.repeat}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"| tokenizer | HF tokenizers s (range) | tdeploy s (range) | tdeploy MB/s | speedup (range) |")
    print(f"|---|---|---|---|---|")
    bad = 0
    for name, d in cases:
        ths, nh = bench_hf(os.path.join(d, "tokenizer.json"), bench_lines, args.batch, args.repeat)
        tts, nt = bench_td(args.tdeploy, d, text_path, args.batch, args.repeat)
        th, tt = statistics.median(ths), statistics.median(tts)
        flag = "" if nh == nt else f" (TOKEN COUNT MISMATCH hf {nh} vs tdeploy {nt})"
        bad += nh != nt
        # speedup range: slowest HF run over fastest tdeploy run .. fastest HF over slowest tdeploy
        print(f"| {name} | {th:.3f} ({min(ths):.3f}-{max(ths):.3f}) | {tt:.3f} ({min(tts):.3f}-{max(tts):.3f}) | "
              f"{nbytes / tt / 1e6:.1f} | {th / tt:.2f}x ({min(ths) / max(tts):.2f}-{max(ths) / min(tts):.2f}){flag} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
