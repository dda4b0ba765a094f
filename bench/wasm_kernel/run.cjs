// gemm's kernel in one wasm instance (V8), as a tab worker runs it: node run.cjs FILE.wasm LABEL
const fs = require('fs');
const [file, label] = process.argv.slice(2);
const kernel = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(file)), { env: { now_ms: () => performance.now() } });
const shapes = [[512, 576, 1536], [8, 576, 1536], [4, 576, 1536], [1, 576, 1536]];
for (const streaming of [false, true]) {
  shapes.forEach(([m, k, n], i) => {
    const products = Math.max(1, Math.floor(2e9 / (2 * m * k * n)));
    const seconds = Math.min(...[0, 1, 2].map(() => kernel.exports.seconds(i, streaming)));
    const how = streaming ? 'streaming' : 'in cache ';
    console.log(`${label.padEnd(22)} ${how} [${String(m).padStart(3)}, ${k}] @ [${k}, ${n}]: ${(2 * m * k * n * products / seconds / 1e9).toFixed(1).padStart(6)} GFLOP/s ${(4 * k * n * products / seconds / 1e9).toFixed(1).padStart(6)} GB/s of weights`);
  });
}
