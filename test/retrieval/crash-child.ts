/**
 * The process the crash test kills: opens the index at DIR as its writer and commits the
 * workload of crash-ops.ts as fast as it can, printing `ack <generation>` after each commit has
 * returned (i.e. is durable), until it is killed.
 *
 *   node bin/run-ts.mjs test/retrieval/crash-child.ts DIR [plaid]
 *
 * With `plaid`, a new index gets the plaid layout (compressed segments) instead of hnsw graphs.
 */
import { IndexWriter } from "../../retrieval/index/writer.ts";
import { CRASH_DIM, apply, expectedState, opsFor, textOf, vectorsOf } from "./crash-ops.ts";

const dir = process.argv[2];
const layout = process.argv[3] === "plaid" ? "plaid" : "hnsw";
const writer = await IndexWriter.open(dir, { create: { dim: CRASH_DIM, layout, graph: { m: 4, efConstruction: 8 } } });
const state = expectedState(writer.generation);
process.stdout.write(`open ${writer.generation}\n`);
for (;;) {
  const generation = writer.generation + 1;
  const op = opsFor(generation, state);
  if (op.kind === "compact") {
    await writer.compact();
  } else {
    writer.delete(op.deletes);
    writer.upsert(op.upserts.map((u) => ({ id: u.id, embeddings: vectorsOf(u), text: textOf(u), metadata: { version: u.version } })));
    await writer.commit();
  }
  if (writer.generation !== generation) throw new Error(`committed generation ${writer.generation}, expected ${generation}`);
  apply(state, op);
  process.stdout.write(`ack ${generation}\n`);
}
