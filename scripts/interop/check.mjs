// Load GGUF files written by `edgec convert` in llama.cpp (node-llama-cpp's
// prebuilt CPU binaries) and check its next-token predictions.
//
//   node check.mjs --gguf-dir DIR --shared SHARED_DIR
//
// DIR holds <model>-<outtype>.gguf. For models with golden logits
// (SHARED/golden/logits/<model>.safetensors: `tokens` I32[64], `logits.F32`
// F32[64, n_vocab] from llama.cpp on its own F32 GGUF), llama.cpp's top token
// after tokens[0..t] must equal the golden argmax of row t, for every t.
// tinystories-656K has no golden: its reference greedy continuation
// (models/tinystories-656K/reference/*.json `tokens`) must be reproduced:
// the top token after tokens[0..t] must be tokens[t+1].
// Prints one line per file and a table; exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

import {loadLlama} from "./llama.mjs";

const args = process.argv.slice(2);
function arg(name, def) {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
const ggufDir = arg("--gguf-dir");
const shared = arg("--shared");
if (!ggufDir || !shared) {
    console.error("usage: node check.mjs --gguf-dir DIR --shared SHARED_DIR");
    process.exit(2);
}

const MODELS = ["stories260K", "stories-student-256", "tinystories-656K"];
// F16/BF16 weights move logits by ~1e-3..1e-2, so where the reference's best
// two logits are closer than this the order may flip; such positions are
// reported as near-ties, not failures. F32 must agree everywhere.
const NEAR_TIE = {f32: 0, f16: 0.02, bf16: 0.02, q4_k_m: 0.05};
const TYPES = arg("--types", "f32,f16,bf16").split(",");
// Quantized files without golden logits of their own: llama.cpp's top token
// must agree with the F32 golden argmax at least this often (quantization
// legitimately flips close calls; these floors are far below what the
// types achieve on these models and far above chance).
const MIN_AGREE = {q8_0: 0.95, q6_k: 0.9, q5_k_m: 0.85, q5_k_s: 0.85, q5_1: 0.8, q5_0: 0.8,
                   q4_k_m: 0.85, q4_k_s: 0.85, q4_1: 0.8, q4_0: 0.8, iq4_nl: 0.8, iq4_xs: 0.8,
                   q3_k_l: 0.7, q3_k_m: 0.7, q3_k_s: 0.7, q2_k: 0.6};

function readSafetensors(file) {
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
    const base = 8 + n;
    const out = {};
    for (const [name, info] of Object.entries(header)) {
        if (name === "__metadata__") continue;
        const [b, e] = info.data_offsets;
        const bytes = buf.subarray(base + b, base + e);
        const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
        const arr = info.dtype === "I32" ? new Int32Array(ab) : info.dtype === "F32" ? new Float32Array(ab) : null;
        out[name] = {shape: info.shape, data: arr};
    }
    return out;
}

function argmax(row) {
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
    return best;
}

function expectations(model, type) {
    const golden = path.join(shared, "golden", "logits", `${model}.safetensors`);
    if (fs.existsSync(golden)) {
        const st = readSafetensors(golden);
        const tokens = Array.from(st.tokens.data);
        // llama.cpp's own logits for its Q4_K_M file, which edgec's equals byte for byte
        const key = type === "q4_k_m" && st["logits.Q4_K_M"] ? "logits.Q4_K_M" : "logits.F32";
        const [rows, nVocab] = st[key].shape;
        const expected = [];
        const margins = [];
        for (let t = 0; t < rows; t++) {
            const row = st[key].data.subarray(t * nVocab, (t + 1) * nVocab);
            const a = argmax(row);
            let second = -Infinity;
            for (let i = 0; i < nVocab; i++) if (i !== a && row[i] > second) second = row[i];
            expected.push(a);
            margins.push(row[a] - second);
        }
        return {source: `golden ${key} (llama.cpp)`, tokens, expected, margins, exact: key !== "logits.F32" || !MIN_AGREE[type]};
    }
    const refDir = path.join(shared, "models", model, "reference");
    if (fs.existsSync(refDir)) {
        const f = fs.readdirSync(refDir).filter((x) => x.endsWith(".json")).sort()[0];
        if (f) {
            const ref = JSON.parse(fs.readFileSync(path.join(refDir, f), "utf8"));
            const tokens = ref.tokens.slice(0, ref.tokens.length - 1);
            const lf = ref.logits_file ? path.join(refDir, ref.logits_file) : null;
            if (lf && fs.existsSync(lf)) {
                // row t = logits after tokens[0..t]; the argmax of each row is
                // what greedy decoding picks (inside the prompt too)
                const b = fs.readFileSync(lf);
                const all = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
                const nVocab = all.length / tokens.length;
                const expected = [], margins = [];
                for (let t = 0; t < tokens.length; t++) {
                    const row = all.subarray(t * nVocab, (t + 1) * nVocab);
                    const a = argmax(row);
                    let second = -Infinity;
                    for (let i = 0; i < nVocab; i++) if (i !== a && row[i] > second) second = row[i];
                    expected.push(a);
                    margins.push(row[a] - second);
                }
                return {source: `reference logits argmax (${ref.logits_file})`, tokens, expected, margins,
                        exact: !MIN_AGREE[type]};
            }
            // no logits: the greedy part of the continuation after the prompt
            return {
                source: `reference greedy tokens (${f})`,
                tokens,
                expected: ref.tokens.slice(1),
                margins: null,
                exact: !MIN_AGREE[type],
            };
        }
    }
    return null;
}

const llama = await loadLlama();

const results = [];
let failures = 0;
for (const model of MODELS) {
    for (const type of TYPES) {
        const exp = expectations(model, type);
        const file = path.join(ggufDir, `${model}-${type}.gguf`);
        const row = {model, type, status: "FAIL", detail: ""};
        results.push(row);
        if (!fs.existsSync(file)) {
            row.detail = "no GGUF";
            failures++;
            continue;
        }
        if (!exp) {
            row.detail = "no golden or reference";
            failures++;
            continue;
        }
        let m, ctx;
        try {
            m = await llama.loadModel({modelPath: file});
            ctx = await m.createContext({contextSize: 256, batchSize: 256, threads: 2});
            const seq = ctx.getSequence();
            const input = exp.tokens.map((t) => [t, {generateNext: {logits: true}}]);
            const out = await seq.controlledEvaluate(input);
            let agree = 0;
            const bad = [];
            for (let t = 0; t < exp.tokens.length; t++) {
                const logits = out[t]?.next?.logits;
                let top = -1;
                if (logits) {
                    // the map is sorted by logit, highest first; take the lowest
                    // id among equal maxima like a first-index argmax
                    let best = -Infinity;
                    for (const [tok, v] of logits) {
                        if (v > best) { best = v; top = tok; }
                        else if (v === best && tok < top) top = tok;
                        else if (v < best) break;
                    }
                }
                if (top === exp.expected[t]) agree++;
                else bad.push(t);
            }
            const n = exp.tokens.length;
            const ties = exp.margins ? bad.filter((t) => exp.margins[t] < (NEAR_TIE[type] ?? 0)) : [];
            const floor = exp.exact === false ? MIN_AGREE[type] : null;
            if (floor !== null && agree >= floor * n) {
                row.status = "PASS";
                row.detail = `top token = F32 argmax at ${agree}/${n} positions (>= ${floor * 100} % required; ${exp.source})`;
            } else if (floor === null && agree + ties.length === n) {
                row.status = "PASS";
                row.detail = `top token = expected at ${agree}/${n} positions (${exp.source})`;
                if (ties.length)
                    row.detail += `; near-ties at ${ties.map((t) => `${t}(margin ${exp.margins[t].toFixed(4)})`).join(", ")}`;
            } else {
                const m2 = exp.margins ? bad.map((t) => `${t}(margin ${exp.margins[t].toFixed(4)})`) : bad;
                row.detail = `top token = expected at ${agree}/${n}; differs at ${m2.join(", ")}`;
                failures++;
            }
        } catch (e) {
            row.detail = `llama.cpp error: ${e.message.split("\n")[0]}`;
            failures++;
        } finally {
            if (ctx) await ctx.dispose();
            if (m) await m.dispose();
        }
        console.log(`${row.status}  ${model} ${type}: ${row.detail}`);
    }
}

console.log("");
console.log(`| model | ${TYPES.join(" | ")} |`);
console.log(`|---|${TYPES.map(() => "---").join("|")}|`);
for (const model of MODELS) {
    const cells = TYPES.map((t) => results.find((r) => r.model === model && r.type === t)?.status ?? "-");
    console.log(`| ${model} | ${cells.join(" | ")} |`);
}
const passed = results.filter((r) => r.status === "PASS").length;
console.log(`\ninterop: ${passed} passed, ${results.length - passed} failed`);
await llama.dispose();
process.exit(failures ? 1 : 0);
