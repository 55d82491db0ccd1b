/**
 * Builds segments' HNSW graphs (inner product space over the stored, decoded rows; label = row
 * number in the segment) in a worker thread (graph-worker.mjs), which writes and fsyncs each
 * graph file. A build starts either empty or from a committed base graph whose rows are the
 * segment's first rows (a merge then only inserts the rows after them). Rows of one document
 * within `dedupCosine` of a row of that document already in the graph are left out: they would
 * only return the same document again. Cancellable: aborting
 * terminates the worker (the next build starts a new one).
 */
import { Worker } from "node:worker_threads";
import { LfmError } from "../../text-core/errors.ts";
import type { GraphSettings } from "./format.ts";
import type { VectorStorage } from "./vector-codec.ts";

export interface GraphBuildJob {
  dim: number;
  settings: GraphSettings;
  storage: VectorStorage;
  /** Rows of the whole segment. */
  totalRows: number;
  /** A committed graph holding rows [0, firstLabel), or null to start empty (firstLabel 0). */
  basePath: string | null;
  /** The rows to insert, as stored (see vector-codec `rowsToBytes`), labelled firstLabel, firstLabel+1, … */
  rows: Uint8Array;
  /** Row count of each document the rows belong to, in order (near-duplicates within a document are left out). */
  docRows: number[];
  firstLabel: number;
  count: number;
  outPath: string;
  signal?: AbortSignal;
  onProgress?: (inserted: number, total: number) => void;
}

export interface BuiltGraph {
  bytes: number;
  crc32: number;
  /** Points in the graph (rows minus the near-duplicates left out). */
  graphRows: number;
}

type WorkerMessage = { kind: "progress"; done: number } | ({ kind: "done" } & BuiltGraph) | { kind: "failed"; message: string };

const WORKER_URL = new URL("./graph-worker.mjs", import.meta.url);

/** One worker thread, started at the first build and kept for the next ones (starting one costs ~0.1 s). */
export class GraphBuilderThread {
  private worker: Worker | null = null;

  build(job: GraphBuildJob): Promise<BuiltGraph> {
    if (job.signal?.aborted) return Promise.reject(new LfmError("ABORTED", "the commit was cancelled; the index is unchanged."));
    // Shared with the worker without a copy when the caller allocated the rows in shared memory.
    let rows = job.rows;
    if (!(rows.buffer instanceof SharedArrayBuffer)) {
      rows = new Uint8Array(new SharedArrayBuffer(job.rows.byteLength));
      rows.set(job.rows);
    }
    this.worker ??= new Worker(WORKER_URL);
    const worker = this.worker;
    worker.ref();
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        job.signal?.removeEventListener("abort", onAbort);
        worker.off("message", onMessage).off("error", onError).off("exit", onExit);
        worker.unref(); // an idle builder never keeps the process alive
        fn();
      };
      const discard = () => {
        if (this.worker === worker) this.worker = null;
        void worker.terminate();
      };
      const onAbort = () => {
        discard();
        finish(() => reject(new LfmError("ABORTED", "the commit was cancelled; the index is unchanged.")));
      };
      const onMessage = (m: WorkerMessage) => {
        if (m.kind === "progress") job.onProgress?.(m.done, job.count);
        else if (m.kind === "done") finish(() => resolve({ bytes: m.bytes, crc32: m.crc32, graphRows: m.graphRows }));
        else finish(() => reject(new LfmError("RUNTIME_FAILED", `building the HNSW graph failed: ${m.message}`)));
      };
      const onError = (e: Error) => {
        discard();
        finish(() => reject(new LfmError("RUNTIME_FAILED", `building the HNSW graph failed: ${e.message}`, { cause: e })));
      };
      const onExit = (code: number) => {
        if (this.worker === worker) this.worker = null;
        finish(() => reject(new LfmError("RUNTIME_FAILED", `the HNSW graph builder exited early (code ${code}).`)));
      };
      job.signal?.addEventListener("abort", onAbort, { once: true });
      worker.on("message", onMessage).on("error", onError).on("exit", onExit);
      worker.postMessage({
        dim: job.dim,
        m: job.settings.m,
        efConstruction: job.settings.efConstruction,
        seed: job.settings.seed,
        dedupCosine: job.settings.dedupCosine,
        docRows: job.docRows,
        totalRows: job.totalRows,
        basePath: job.basePath,
        storage: job.storage,
        rows: rows.buffer,
        rowsByteOffset: rows.byteOffset,
        firstLabel: job.firstLabel,
        count: job.count,
        outPath: job.outPath,
      });
    });
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
  }
}
