/**
 * The crash test's workload: commit `g` applies `opsFor(g, state)` — a deterministic function of
 * the generation and the state before it — so the test can compute what the index must hold at
 * any generation without trusting the index. Every tenth commit is a compaction.
 */
import { rng } from "../../bench/synthetic-colbert.ts";

export const CRASH_DIM = 8;

export interface ExpectedDoc {
  id: string;
  /** Generation that wrote this version (its vectors and text derive from it). */
  version: number;
  rows: number;
}

export type Op = { kind: "compact" } | { kind: "change"; upserts: ExpectedDoc[]; deletes: string[] };

export function opsFor(generation: number, state: Map<string, ExpectedDoc>): Op {
  if (generation % 10 === 0) return { kind: "compact" };
  const next = rng(generation * 7919 + 13);
  const upserts: ExpectedDoc[] = [];
  const adds = 1 + Math.floor(next() * 12);
  for (let j = 0; j < adds; j++) upserts.push({ id: `g${generation}-${j}`, version: generation, rows: 1 + Math.floor(next() * 6) });
  const ids = [...state.keys()].sort();
  const updates = ids.length > 0 ? Math.floor(next() * 3) : 0;
  for (let j = 0; j < updates; j++) {
    const id = ids[Math.floor(next() * ids.length)];
    if (!upserts.some((u) => u.id === id)) upserts.push({ id, version: generation, rows: 1 + Math.floor(next() * 6) });
  }
  const deletes: string[] = [];
  const deleteCount = ids.length > 5 ? Math.floor(next() * 6) : 0;
  for (let j = 0; j < deleteCount; j++) {
    const id = ids[Math.floor(next() * ids.length)];
    if (!deletes.includes(id) && !upserts.some((u) => u.id === id)) deletes.push(id);
  }
  return { kind: "change", upserts, deletes };
}

export function apply(state: Map<string, ExpectedDoc>, op: Op): void {
  if (op.kind === "compact") return;
  for (const id of op.deletes) state.delete(id);
  for (const u of op.upserts) state.set(u.id, u);
}

/** The state after commits 1…generation. */
export function expectedState(generation: number): Map<string, ExpectedDoc> {
  const state = new Map<string, ExpectedDoc>();
  for (let g = 1; g <= generation; g++) apply(state, opsFor(g, state));
  return state;
}

export function textOf(doc: ExpectedDoc): string {
  return `passage ${doc.id} version ${doc.version}`;
}

/** Deterministic unit rows for a document version. */
export function vectorsOf(doc: ExpectedDoc): { rows: number; dim: number; data: Float32Array } {
  const next = rng(doc.version * 1_000_003 + hashString(doc.id));
  const data = new Float32Array(doc.rows * CRASH_DIM);
  for (let r = 0; r < doc.rows; r++) {
    let n = 0;
    for (let d = 0; d < CRASH_DIM; d++) {
      data[r * CRASH_DIM + d] = next() - 0.5;
      n += data[r * CRASH_DIM + d] ** 2;
    }
    for (let d = 0; d < CRASH_DIM; d++) data[r * CRASH_DIM + d] /= Math.sqrt(n);
  }
  return { rows: doc.rows, dim: CRASH_DIM, data };
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
