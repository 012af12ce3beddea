// Compare llama.cpp with edgec's engine on the same GGUF files: next-token
// choices, the value of the best logit and, given the text, tokenization.
//
//   node engine_check.mjs --dir DIR [--min-agree 0.95] [--max-logit-diff X]
//                         [--text FILE]
//
// DIR holds NAME.gguf and NAME.edgec.json (from edgec-engine-top: bos_added,
// tokens, the engine's top token, its logit and its margin per position).
// llama.cpp (node-llama-cpp's prebuilt CPU binaries) evaluates the same
// tokens. A file passes when
//  - its top token equals the engine's at >= min-agree of the positions,
//  - with --max-logit-diff, the best logit differs from the engine's by at
//    most X * max(1, |logit|) at every position but the last (the same
//    weights, summed in another order: a missing bias or a wrong RoPE moves
//    it by far more; node-llama-cpp's value for the batch's last position
//    can differ from the one the same position gets when it is not last,
//    e.g. 0.9575 and 0.9542), and
//  - with --text, llama.cpp's tokenization of FILE (special tokens parsed,
//    no BOS) equals the engine's tokens after its BOS, and llama.cpp adds a
//    BOS exactly when edgec did.
// Prints one line per file and exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

import {loadLlama} from "./llama.mjs";

const args = process.argv.slice(2);
function arg(name, def) {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
const dir = arg("--dir");
const minAgree = Number(arg("--min-agree", "0.95"));
const maxLogitDiff = arg("--max-logit-diff") === undefined ? null : Number(arg("--max-logit-diff"));
const textFile = arg("--text");
if (!dir) {
    console.error("usage: node engine_check.mjs --dir DIR [--min-agree F] [--max-logit-diff X] [--text FILE]");
    process.exit(2);
}
const text = textFile ? fs.readFileSync(textFile, "utf8") : null;

const llama = await loadLlama();

let failures = 0, total = 0;
for (const f of fs.readdirSync(dir).filter((x) => x.endsWith(".gguf")).sort()) {
    const ref = JSON.parse(fs.readFileSync(path.join(dir, f.replace(/\.gguf$/, ".edgec.json")), "utf8"));
    total++;
    let m, ctx;
    try {
        m = await llama.loadModel({modelPath: path.join(dir, f)});
        const notes = [];
        let ok = true;
        if (text !== null) {
            const skip = ref.bos_added ? 1 : 0;
            const ours = ref.tokens.slice(skip);
            const theirs = Array.from(m.tokenize(text, true)).slice(0, ours.length);
            let at = -1;
            for (let i = 0; i < ours.length && at < 0; i++) if (theirs[i] !== ours[i]) at = i;
            const llamaBos = m.tokens.shouldPrependBosToken;
            if (llamaBos !== !!ref.bos_added) {
                ok = false;
                notes.push(`BOS: llama.cpp ${llamaBos ? "adds" : "adds no"} BOS, edgec ${ref.bos_added ? "does" : "does not"}`);
            }
            if (at >= 0) {
                ok = false;
                notes.push(`tokens differ at ${at}: llama.cpp ${theirs.slice(at, at + 6).join(",")} ` +
                           `edgec ${ours.slice(at, at + 6).join(",")}`);
            } else {
                notes.push(`tokens = edgec's (${ours.length}${ref.bos_added ? " after BOS" : ", no BOS"})`);
            }
        }
        ctx = await m.createContext({contextSize: ref.tokens.length, batchSize: ref.tokens.length, threads: 2});
        const seq = ctx.getSequence();
        const out = await seq.controlledEvaluate(ref.tokens.map((t) => [t, {generateNext: {logits: true}}]));
        let agree = 0, worst = 0, worstAt = -1;
        const bad = [];
        for (let t = 0; t < ref.tokens.length; t++) {
            let top = -1, best = -Infinity;
            for (const [tok, v] of out[t]?.next?.logits ?? []) {
                if (v > best) { best = v; top = tok; }
                else if (v === best && tok < top) top = tok;
                else if (v < best) break;
            }
            if (top === ref.top[t]) agree++;
            else bad.push(`${t}(margin ${ref.margin[t].toFixed(4)})`);
            if (ref.top_logit && t + 1 < ref.tokens.length) {
                const rel = Math.abs(best - ref.top_logit[t]) / Math.max(1, Math.abs(ref.top_logit[t]));
                if (!(rel <= worst)) { worst = rel; worstAt = t; }
            }
        }
        const n = ref.tokens.length, frac = agree / n;
        if (frac < minAgree) ok = false;
        let logitNote = "";
        if (ref.top_logit) {
            logitNote = `, best logit within ${worst.toExponential(2)}`;
            if (maxLogitDiff !== null && !(worst <= maxLogitDiff)) {
                ok = false;
                logitNote += ` > ${maxLogitDiff} (at ${worstAt})`;
            }
        }
        if (!ok) failures++;
        console.log(`${ok ? "PASS" : "FAIL"}  ${f}: llama.cpp top token = edgec's at ${agree}/${n} ` +
                    `(${(100 * frac).toFixed(1)} %)${logitNote}` + (notes.length ? `; ${notes.join("; ")}` : "") +
                    (bad.length ? `; differs at ${bad.slice(0, 8).join(", ")}` : ""));
    } catch (e) {
        failures++;
        console.log(`FAIL  ${f}: llama.cpp error: ${e.message.split("\n")[0]}`);
    } finally {
        if (ctx) await ctx.dispose();
        if (m) await m.dispose();
    }
}
console.log(`\n${arg("--name", "engine_check")}: ${total - failures} passed, ${failures} failed`);
await llama.dispose();
process.exit(failures ? 1 : 0);
