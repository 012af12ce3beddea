// Compare llama.cpp's next-token choices with edgec's engine on the same
// (pruned) GGUF files.
//
//   node prune_check.mjs --dir DIR [--min-agree 0.95]
//
// DIR holds NAME.gguf and NAME.edgec.json (from edgec-engine-top: tokens,
// the engine's top token and its margin per position). llama.cpp
// (node-llama-cpp's prebuilt CPU binaries) evaluates the same tokens; a file
// passes when its top token equals the engine's at >= min-agree of the
// positions. Prints one line per file and exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

const args = process.argv.slice(2);
function arg(name, def) {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
const dir = arg("--dir");
const minAgree = Number(arg("--min-agree", "0.95"));
if (!dir) {
    console.error("usage: node prune_check.mjs --dir DIR [--min-agree F]");
    process.exit(2);
}

let getLlama, LlamaLogLevel;
try {
    ({getLlama, LlamaLogLevel} = await import("node-llama-cpp"));
} catch (e) {
    console.log(`SKIP: node-llama-cpp is not installed (${e.message.split("\n")[0]})`);
    process.exit(77);
}
let llama;
try {
    llama = await getLlama({build: "never", usePrebuiltBinaries: true, skipDownload: true,
                            gpu: false, progressLogs: false, logLevel: LlamaLogLevel.error});
} catch (e) {
    console.log(`SKIP: no usable prebuilt llama.cpp binary (${e.message.split("\n")[0]})`);
    process.exit(77);
}

let failures = 0, total = 0;
for (const f of fs.readdirSync(dir).filter((x) => x.endsWith(".gguf")).sort()) {
    const ref = JSON.parse(fs.readFileSync(path.join(dir, f.replace(/\.gguf$/, ".edgec.json")), "utf8"));
    total++;
    let m, ctx;
    try {
        m = await llama.loadModel({modelPath: path.join(dir, f)});
        ctx = await m.createContext({contextSize: ref.tokens.length, batchSize: ref.tokens.length, threads: 2});
        const seq = ctx.getSequence();
        const out = await seq.controlledEvaluate(ref.tokens.map((t) => [t, {generateNext: {logits: true}}]));
        let agree = 0;
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
        }
        const n = ref.tokens.length, frac = agree / n;
        const ok = frac >= minAgree;
        if (!ok) failures++;
        console.log(`${ok ? "PASS" : "FAIL"}  ${f}: llama.cpp top token = edgec's at ${agree}/${n} (${(100 * frac).toFixed(1)} %)` +
                    (bad.length ? `; differs at ${bad.slice(0, 8).join(", ")}` : ""));
    } catch (e) {
        failures++;
        console.log(`FAIL  ${f}: llama.cpp error: ${e.message.split("\n")[0]}`);
    } finally {
        if (ctx) await ctx.dispose();
        if (m) await m.dispose();
    }
}
console.log(`\ninterop_prune: ${total - failures} passed, ${failures} failed`);
await llama.dispose();
process.exit(failures ? 1 : 0);
