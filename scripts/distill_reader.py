#!/usr/bin/env python3
"""Read an edgec-distill export (docs/distill-format.md) with numpy + zlib + json.

As a library:
    from distill_reader import DistillExport
    ex = DistillExport("out/")            # parses and checks manifest.json
    for batch in ex.batches(32):          # verifies every shard's size, crc32, sha256
        batch.input_ids   # int32 [B, L]      tokens the teacher saw
        batch.topk_ids    # int32 [B, L, k]   next-token ids, most probable first
        batch.topk_logp   # float32 [B, L, k] log_softmax(logits / T) of those ids
        batch.tail_mass   # float32 [B, L]    probability mass outside the top k

Command line:
    distill_reader.py DIR                       verify every shard, print a summary
    distill_reader.py DIR --compare DUMP.json   also compare one sequence with
                                                `edgec distill-export --dump DIR --dump-seq N`
Exit status 0 when everything verifies (and matches), 1 otherwise.
"""
import hashlib
import json
import os
import struct
import sys
import zlib
from collections import namedtuple

import numpy as np

FORMAT = "edgec-distill"
VERSION = 1
HEADER_BYTES = 112
MAGIC = b"ECDS"
# magic, version, header bytes, index, first_seq, n_seqs, seq_len, top_k, id_bytes,
# steps per nat, n_vocab, payload bytes, stored bytes, crc32, reserved, fingerprint,
# header crc32, reserved
HEADER = struct.Struct("<4sIIIQIIIIIIQQII32sII")
assert HEADER.size == HEADER_BYTES

Batch = namedtuple("Batch", "input_ids topk_ids topk_logp tail_mass")


class DistillError(Exception):
    pass


def _unshuffle(buf, n, width):
    """n little-endian unsigned integers of `width` bytes stored byte-plane by byte-plane."""
    planes = np.frombuffer(buf, dtype=np.uint8, count=n * width).reshape(width, n)
    out = np.zeros(n, dtype=np.uint32)
    for b in range(width):
        out |= planes[b].astype(np.uint32) << np.uint32(8 * b)
    return out


class DistillExport:
    def __init__(self, folder):
        self.folder = folder
        path = os.path.join(folder, "manifest.json")
        with open(path, "rb") as f:
            m = json.load(f)
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise DistillError(f"{path}: 'format' is not \"{FORMAT}\"")
        if m.get("version") != VERSION:
            raise DistillError(f"{path}: 'version' {m.get('version')}, this reader reads {VERSION}")
        if m.get("complete") is not True:
            raise DistillError(f"{path}: the export is incomplete (an interrupted run)")
        for key in ("n_vocab", "top_k", "seq_len", "id_bytes", "steps_per_nat", "shard_tokens",
                    "n_seqs", "n_tokens"):
            if not isinstance(m.get(key), int) or m[key] < 0:
                raise DistillError(f"{path}: '{key}' missing or not a non-negative integer")
        self.m = m
        self.seq_len, self.top_k, self.n_vocab = m["seq_len"], m["top_k"], m["n_vocab"]
        self.id_bytes, self.steps = m["id_bytes"], m["steps_per_nat"]
        if (self.top_k < 1 or self.top_k > self.n_vocab or self.seq_len < 2
                or self.id_bytes not in (2, 4) or m["n_tokens"] != m["n_seqs"] * self.seq_len
                or m["shard_tokens"] % self.seq_len != 0 or m["shard_tokens"] == 0):
            raise DistillError(f"{path}: inconsistent counts")
        per = m["shard_tokens"] // self.seq_len
        shards = m.get("shards")
        want = -(-m["n_seqs"] // per)
        if not isinstance(shards, list) or len(shards) != want:
            raise DistillError(f"{path}: 'shards': expected {want} entries")
        seq = 0
        for i, s in enumerate(shards):
            n = min(per, m["n_seqs"] - seq)
            if (s.get("file") != f"shard-{i:05d}.ecds" or s.get("index") != i
                    or s.get("first_seq") != seq or s.get("n_seqs") != n
                    or s.get("n_tokens") != n * self.seq_len):
                raise DistillError(f"{path}: 'shards[{i}]' does not follow the previous shards")
            seq += n
        self.shards = shards
        self.fingerprint = bytes.fromhex(m["fingerprint"])

    @property
    def n_seqs(self):
        return self.m["n_seqs"]

    def read_shard(self, i):
        """(input_ids [n, L], topk_ids [n, L, k], topk_logp [n, L, k], tail_logp [n, L])"""
        s = self.shards[i]
        path = os.path.join(self.folder, s["file"])
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != s["bytes"]:
            raise DistillError(f"{path}: {len(data)} bytes, the manifest says {s['bytes']}")
        if hashlib.sha256(data).hexdigest() != s["sha256"]:
            raise DistillError(f"{path}: sha256 differs from the manifest")
        if len(data) < HEADER_BYTES:
            raise DistillError(f"{path}: shorter than the header")
        (magic, version, hbytes, index, first_seq, n_seqs, seq_len, top_k, id_bytes, steps,
         n_vocab, raw_bytes, stored, crc, res0, fp, hcrc, res1) = HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION or hbytes != HEADER_BYTES:
            raise DistillError(f"{path}: not a version {VERSION} shard")
        if zlib.crc32(data[:104]) != hcrc or res0 or res1:
            raise DistillError(f"{path}: header crc32 mismatch")
        if (index, first_seq, n_seqs, seq_len, top_k, id_bytes, steps, n_vocab, fp) != (
                i, s["first_seq"], s["n_seqs"], self.seq_len, self.top_k, self.id_bytes,
                self.steps, self.n_vocab, self.fingerprint):
            raise DistillError(f"{path}: header disagrees with the manifest")
        if stored != len(data) - HEADER_BYTES:
            raise DistillError(f"{path}: truncated: header says {stored} stored bytes")
        z = data[HEADER_BYTES:]
        if zlib.crc32(z) != crc or crc != s["crc32"]:
            raise DistillError(f"{path}: crc32 of the stored data does not match")
        k, w = top_k, id_bytes
        n = n_seqs * seq_len
        want = n * (w * (1 + k) + 2 * (k + 1))
        if raw_bytes != want:
            raise DistillError(f"{path}: payload size {raw_bytes}, expected {want}")
        d = zlib.decompressobj()
        raw = d.decompress(z, raw_bytes + 1)
        if len(raw) != raw_bytes or not d.eof or d.unused_data:
            raise DistillError(f"{path}: zlib stream does not inflate to {raw_bytes} bytes")
        mv = memoryview(raw)
        o = 0
        inp = _unshuffle(mv[o:], n, w); o += n * w
        ids = _unshuffle(mv[o:], n * k, w); o += n * k * w
        q_top = _unshuffle(mv[o:], n, 2); o += n * 2
        q_del = _unshuffle(mv[o:], n * (k - 1), 2); o += n * (k - 1) * 2
        q_tail = _unshuffle(mv[o:], n, 2)
        if inp.max(initial=0) >= n_vocab or ids.max(initial=0) >= n_vocab:
            raise DistillError(f"{path}: token id outside the vocabulary")
        q = np.concatenate([q_top.reshape(n, 1).astype(np.int64),
                            q_del.reshape(n, k - 1).astype(np.int64)], axis=1).cumsum(axis=1)
        if q.max(initial=0) > 65535:
            raise DistillError(f"{path}: log-probability offsets sum past 65535")
        logp = -q.astype(np.float64) / steps
        tail = -q_tail.astype(np.float64) / steps
        return (inp.astype(np.int32).reshape(n_seqs, seq_len),
                ids.astype(np.int32).reshape(n_seqs, seq_len, k),
                logp.reshape(n_seqs, seq_len, k), tail.reshape(n_seqs, seq_len))

    def batches(self, batch_seqs):
        """Batches of batch_seqs sequences (the last may be shorter), in order."""
        pend = []
        for i in range(len(self.shards)):
            inp, ids, logp, tail = self.read_shard(i)
            for j in range(inp.shape[0]):
                pend.append((inp[j], ids[j], logp[j], tail[j]))
                if len(pend) == batch_seqs:
                    yield self._stack(pend)
                    pend = []
        if pend:
            yield self._stack(pend)

    @staticmethod
    def _stack(rows):
        return Batch(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]),
                     np.stack([r[2] for r in rows]).astype(np.float32),
                     np.exp(np.stack([r[3] for r in rows])).astype(np.float32))


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    try:
        ex = DistillExport(argv[1])
        n_seq = n_tok = 0
        mass_err = 0.0
        for b in ex.batches(16):
            n_seq += b.input_ids.shape[0]
            n_tok += b.input_ids.size
            total = np.exp(b.topk_logp.astype(np.float64)).sum(-1) + b.tail_mass
            mass_err = max(mass_err, float(np.abs(total - 1).max()))
        if n_seq != ex.n_seqs or n_tok != ex.m["n_tokens"]:
            raise DistillError(f"read {n_seq} sequences / {n_tok} tokens, the manifest says "
                               f"{ex.n_seqs} / {ex.m['n_tokens']}")
        print(f"{argv[1]}: {len(ex.shards)} shards verified, {n_seq} sequences, {n_tok} tokens, "
              f"k {ex.top_k}; |sum(top-k p) + tail - 1| <= {mass_err:.2e}")
        if len(argv) >= 4 and argv[2] == "--compare":
            with open(argv[3]) as f:
                dump = json.load(f)
            s = dump["seq"]
            for b_i, b in enumerate(ex.batches(1)):
                if b_i == s:
                    break
            pos = dump["positions"]
            want_in = np.array([p["input"] for p in pos], dtype=np.int32)
            want_ids = np.array([p["ids"] for p in pos], dtype=np.int32)
            want_lp = np.array([p["logp"] for p in pos], dtype=np.float64)
            want_tail = np.array([p["tail_logp"] for p in pos], dtype=np.float64)
            inp, ids, logp, tail = ex.read_shard(dump["shard"])
            j = s - ex.shards[dump["shard"]]["first_seq"]
            ok = (np.array_equal(inp[j], want_in) and np.array_equal(ids[j], want_ids)
                  and np.array_equal(logp[j], want_lp) and np.array_equal(tail[j], want_tail)
                  and np.array_equal(b.input_ids[0], want_in)
                  and np.array_equal(b.topk_ids[0], want_ids)
                  and np.allclose(b.topk_logp[0], want_lp, rtol=0, atol=1e-5))
            if not ok:
                raise DistillError(f"sequence {s}: records differ from the C reader's dump")
            print(f"sequence {s}: {len(pos)} positions x k {ex.top_k} identical to the C dump")
    except (DistillError, OSError, ValueError, KeyError) as e:
        print(f"distill_reader: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
