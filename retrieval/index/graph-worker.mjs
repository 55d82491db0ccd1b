// Builds segments' HNSW graphs off the main thread (hnswlib-node's calls are synchronous and take
// minutes on large segments; the main thread stays free for Ctrl-C and progress). Plain
// JavaScript because worker threads do not inherit the TypeScript loader. Driven by
// graph-build.ts, which documents the job fields; one job at a time, for as long as the writer lives.
import { closeSync, fsyncSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { parentPort } from "node:worker_threads";
import { describeOpenFile } from "./file-checksum.mjs";

const require = createRequire(import.meta.url);
const { HierarchicalNSW } = require("hnswlib-node");

const half = new Float32Array(65536);
for (let h = 0; h < 65536; h++) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  half[h] = exp === 0 ? sign * mant * 2 ** -24 : exp === 0x1f ? (mant === 0 ? sign * Infinity : NaN) : sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Fills `point` with row r, decoded from the stored codes. */
function rowReader(job, point) {
  const { storage, rows, rowsByteOffset, count, dim } = job;
  if (storage === "float16") {
    const codes = new Uint16Array(rows, rowsByteOffset, count * dim);
    return (r) => {
      for (let d = 0; d < dim; d++) point[d] = half[codes[r * dim + d]];
    };
  }
  if (storage === "float32") {
    const codes = new Float32Array(rows, rowsByteOffset, count * dim);
    return (r) => {
      for (let d = 0; d < dim; d++) point[d] = codes[r * dim + d];
    };
  }
  const scales = new Float32Array(rows, rowsByteOffset, count);
  const codes = new Int8Array(rows, rowsByteOffset + count * 4, count * dim);
  return (r) => {
    for (let d = 0; d < dim; d++) point[d] = codes[r * dim + d] * scales[r];
  };
}

/** fsync, then the size and CRC-32 the manifest will record. */
function syncAndDescribe(path) {
  const fd = openSync(path, "r+");
  try {
    fsyncSync(fd);
    return describeOpenFile(fd);
  } finally {
    closeSync(fd);
  }
}

function build(job) {
  const graph = new HierarchicalNSW("ip", job.dim);
  if (job.basePath !== null) {
    graph.readIndexSync(job.basePath);
    graph.resizeIndex(Math.max(job.totalRows, 1));
  } else {
    graph.initIndex(Math.max(job.totalRows, 1), job.m, job.efConstruction, job.seed);
  }
  const { dim } = job;
  const point = new Array(dim).fill(0);
  const readRow = rowReader(job, point);
  const step = Math.max(1000, Math.floor(job.count / 100));
  // A row nearly equal to one of its document's rows already in the graph adds no way to find
  // that document: it is left out (it is still stored and scored exactly).
  const kept = new Float32Array(job.docRows.reduce((a, b) => Math.max(a, b), 1) * dim);
  let r = 0;
  for (const rows of job.docRows) {
    let keptCount = 0;
    for (let i = 0; i < rows; i++, r++) {
      readRow(r);
      let duplicate = false;
      for (let k = 0; k < keptCount && !duplicate; k++) {
        let dot = 0;
        for (let d = 0; d < dim; d++) dot += point[d] * kept[k * dim + d];
        duplicate = dot >= job.dedupCosine;
      }
      if (!duplicate) {
        for (let d = 0; d < dim; d++) kept[keptCount * dim + d] = point[d];
        keptCount++;
        graph.addPoint(point, job.firstLabel + r);
      }
      if ((r + 1) % step === 0) parentPort.postMessage({ kind: "progress", done: r + 1 });
    }
  }
  const graphRows = graph.getCurrentCount();
  graph.writeIndexSync(job.outPath);
  return { ...syncAndDescribe(job.outPath), graphRows };
}

parentPort.on("message", (job) => {
  try {
    parentPort.postMessage({ kind: "done", ...build(job) });
  } catch (e) {
    parentPort.postMessage({ kind: "failed", message: e instanceof Error ? e.message : String(e) });
  }
});
