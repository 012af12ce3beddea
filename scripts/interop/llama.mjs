// The llama.cpp the interop checks run: node-llama-cpp's prebuilt CPU
// binaries. build "never" + usePrebuiltBinaries: only the binaries shipped in
// @node-llama-cpp/linux-x64 are used, nothing is compiled or downloaded.
// Without the package or a usable binary it prints SKIP and exits 77, which
// the calling script turns into its SKIP (a failure under CI=true).
import process from "node:process";

export async function loadLlama() {
    let getLlama, LlamaLogLevel;
    try {
        ({getLlama, LlamaLogLevel} = await import("node-llama-cpp"));
    } catch (e) {
        console.log(`SKIP: node-llama-cpp is not installed (${e.message.split("\n")[0]})`);
        process.exit(77);
    }
    try {
        return await getLlama({build: "never", usePrebuiltBinaries: true, skipDownload: true, gpu: false,
                               progressLogs: false, logLevel: LlamaLogLevel.error});
    } catch (e) {
        console.log(`SKIP: no usable prebuilt llama.cpp binary (${e.message.split("\n")[0]})`);
        process.exit(77);
    }
}
