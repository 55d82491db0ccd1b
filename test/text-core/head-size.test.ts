/**
 * The language core at attention head sizes onnxruntime's GroupQueryAttention rejects (not a
 * multiple of 8: 12, 20, 36, with fewer KV heads than heads) against a float64 LFM2 forward
 * written here: a whole prompt, prefill then one token at a time, and a left-padded batch.
 * The tiny checkpoints (random weights) are written to a temporary folder.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadLfm2Config, parseLfm2Config } from "../../text-core/config.ts";
import { TextModel } from "../../text-core/model.ts";
import { SafetensorsFile } from "../../text-core/safetensors.ts";
import { lfm2TensorShapes, writeSyntheticCheckpoint } from "../../bench/synthetic-checkpoint.ts";
import { FIXTURES, TEST_CACHE, errorStats, expectClose } from "../helpers/reference.ts";

const TOKENIZER_FROM = join(FIXTURES, "text/tiny-lfm2");
const LAYERS = ["conv", "full_attention", "conv", "full_attention"];

/** A tiny LFM2 config.json with `heads` heads of width `headDim` over `kvHeads` KV heads. */
function tinyLfm2Config(headDim: number, heads: number, kvHeads: number): Record<string, unknown> {
  return {
    architectures: ["Lfm2ForCausalLM"],
    model_type: "lfm2",
    block_auto_adjust_ff_dim: false,
    conv_L_cache: 3,
    conv_bias: false,
    dtype: "float32",
    bos_token_id: 1,
    eos_token_id: 7,
    pad_token_id: 0,
    hidden_size: heads * headDim,
    intermediate_size: 64,
    layer_types: LAYERS,
    num_hidden_layers: LAYERS.length,
    max_position_embeddings: 4096,
    norm_eps: 1e-5,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    rope_parameters: { rope_theta: 1000000.0, rope_type: "default" },
    tie_word_embeddings: true,
    vocab_size: 1024,
  };
}

/** Writes a tiny random-weight LFM2 checkpoint under `root` and returns its folder. */
function writeTinyLfm2(root: string, headDim: number, heads: number, kvHeads: number): string {
  const raw = tinyLfm2Config(headDim, heads, kvHeads);
  const tensors = lfm2TensorShapes(parseLfm2Config(raw, "tiny config"));
  return writeSyntheticCheckpoint(join(root, `lfm2-hd${headDim}-h${heads}-kv${kvHeads}`), { config: raw, tensors, values: "random", tokenizerFrom: TOKENIZER_FROM });
}

/** HF `Lfm2ForCausalLM` in float64, one unpadded sequence: the logits at every position. */
class ReferenceLfm2 {
  private readonly w = new Map<string, Float64Array>();

  constructor(
    dir: string,
    private readonly c = loadLfm2Config(dir),
  ) {
    const file = SafetensorsFile.open(join(dir, "model.safetensors"));
    for (const [name] of lfm2TensorShapes(c)) this.w.set(name, Float64Array.from(file.readFloat32(name)));
    file.close();
  }

  private get(name: string): Float64Array {
    const t = this.w.get(`model.${name}`);
    if (!t) throw new Error(`no ${name}`);
    return t;
  }

  /** `x` [S, in] · Wᵀ for W [out, in]. */
  private linear(x: Float64Array[], name: string): Float64Array[] {
    const W = this.get(name);
    const inDim = x[0].length;
    const outDim = W.length / inDim;
    return x.map((row) => {
      const y = new Float64Array(outDim);
      for (let o = 0; o < outDim; o++) {
        let s = 0;
        for (let i = 0; i < inDim; i++) s += W[o * inDim + i] * row[i];
        y[o] = s;
      }
      return y;
    });
  }

  private rmsNorm(x: Float64Array, weight: Float64Array): Float64Array {
    let ms = 0;
    for (const v of x) ms += v * v;
    const r = 1 / Math.sqrt(ms / x.length + this.c.normEps);
    return x.map((v, i) => v * r * weight[i]);
  }

  logits(ids: number[]): Float64Array[] {
    const { hiddenSize: D, headDim: hd, numHeads: H, numKvHeads: Hkv, convLCache: L, vocabSize: V } = this.c;
    const embed = this.get("embed_tokens.weight");
    let h = ids.map((id) => embed.slice(id * D, (id + 1) * D));
    this.c.layerTypes.forEach((type, layer) => {
      const p = `layers.${layer}`;
      const x = h.map((row) => this.rmsNorm(row, this.get(`${p}.operator_norm.weight`)));
      let mixed: Float64Array[];
      if (type === "conv") {
        const bcx = this.linear(x, `${p}.conv.in_proj.weight`);
        const bx = bcx.map((r) => r.slice(0, D).map((g, c) => g * r[2 * D + c]));
        const taps = this.get(`${p}.conv.conv.weight`); // [D, 1, L]
        const y = bcx.map((r, t) => {
          const out = new Float64Array(D);
          for (let c = 0; c < D; c++) {
            let acc = 0;
            for (let k = 0; k < L; k++) {
              const src = t - (L - 1) + k;
              if (src >= 0) acc += taps[c * L + k] * bx[src][c];
            }
            out[c] = r[D + c] * acc;
          }
          return out;
        });
        mixed = this.linear(y, `${p}.conv.out_proj.weight`);
      } else {
        const a = `${p}.self_attn`;
        const rope = (v: Float64Array, pos: number) => {
          const out = new Float64Array(hd);
          for (let i = 0; i < hd / 2; i++) {
            const angle = pos * this.c.ropeTheta ** ((-2 * i) / hd);
            const [x1, x2] = [v[i], v[i + hd / 2]];
            out[i] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
            out[i + hd / 2] = x2 * Math.cos(angle) + x1 * Math.sin(angle);
          }
          return out;
        };
        const headsOf = (rows: Float64Array[], n: number, norm?: string) =>
          rows.map((r, t) => Array.from({ length: n }, (_, j) => {
            const v = r.slice(j * hd, (j + 1) * hd);
            return norm ? rope(this.rmsNorm(v, this.get(norm)), t) : v;
          }));
        const q = headsOf(this.linear(x, `${a}.q_proj.weight`), H, `${a}.q_layernorm.weight`);
        const k = headsOf(this.linear(x, `${a}.k_proj.weight`), Hkv, `${a}.k_layernorm.weight`);
        const v = headsOf(this.linear(x, `${a}.v_proj.weight`), Hkv);
        const context = q.map((qt, t) => {
          const out = new Float64Array(H * hd);
          for (let j = 0; j < H; j++) {
            const kv = Math.floor(j / (H / Hkv));
            const scores = Array.from({ length: t + 1 }, (_, s) => qt[j].reduce((acc, qv, d) => acc + qv * k[s][kv][d], 0) / Math.sqrt(hd));
            const max = Math.max(...scores);
            const e = scores.map((z) => Math.exp(z - max));
            const sum = e.reduce((x1, x2) => x1 + x2, 0);
            for (let s = 0; s <= t; s++) for (let d = 0; d < hd; d++) out[j * hd + d] += (e[s] / sum) * v[s][kv][d];
          }
          return out;
        });
        mixed = this.linear(context, `${a}.out_proj.weight`);
      }
      h = h.map((r, t) => r.map((val, c) => val + mixed[t][c]));
      const f = h.map((row) => this.rmsNorm(row, this.get(`${p}.ffn_norm.weight`)));
      const gate = this.linear(f, `${p}.feed_forward.w1.weight`);
      const up = this.linear(f, `${p}.feed_forward.w3.weight`);
      const ff = this.linear(gate.map((g, t) => g.map((z, i) => (z / (1 + Math.exp(-z))) * up[t][i])), `${p}.feed_forward.w2.weight`);
      h = h.map((r, t) => r.map((val, c) => val + ff[t][c]));
    });
    const normed = h.map((row) => this.rmsNorm(row, this.get("embedding_norm.weight")));
    return normed.map((row) => {
      const out = new Float64Array(V);
      for (let t = 0; t < V; t++) {
        let s = 0;
        for (let c = 0; c < D; c++) s += embed[t * D + c] * row[c];
        out[t] = s;
      }
      return out;
    });
  }
}

const concat = (rows: ArrayLike<number>[]) => Float64Array.from(rows.flatMap((r) => Array.from(r)));

const SHAPES: Array<{ headDim: number; heads: number; kvHeads: number }> = [
  { headDim: 12, heads: 8, kvHeads: 2 },
  { headDim: 20, heads: 4, kvHeads: 2 },
  { headDim: 36, heads: 2, kvHeads: 1 },
];

const root = mkdtempSync(join(tmpdir(), "lfm2-head-size-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Two prompts of different lengths from the tiny vocabulary.
const LONG = [1, 52, 311, 907, 14, 88, 623, 200, 41, 777, 5, 1000, 63];
const SHORT = [1, 409, 18, 260, 733, 97];

describe.each(SHAPES)("LFM2 core with head size $headDim ($heads heads, $kvHeads KV heads)", ({ headDim, heads, kvHeads }) => {
  let model: TextModel;
  let ref: ReferenceLfm2;
  beforeAll(async () => {
    const dir = writeTinyLfm2(root, headDim, heads, kvHeads);
    ref = new ReferenceLfm2(dir);
    model = await TextModel.load(dir, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
    expect(model.config.headDim).toBe(headDim);
  });
  afterAll(async () => {
    await model?.release();
  });

  it("gives the float64 logits at every position of a prompt", async () => {
    const out = await model.runtime.forward(model.runtime.newState(1), { ids: [LONG], keep: LONG.length });
    expectClose(out.output, concat(ref.logits(LONG)), `hd ${headDim} prompt logits`);
  });

  it("prefill, a second piece after the past, then one token at a time (from a 2-position KV buffer that must grow) gives the float64 logits", async () => {
    const expected = ref.logits(LONG);
    const state = model.runtime.newState(1, 2);
    const P = 5;
    await model.runtime.forward(state, { ids: [LONG.slice(0, 1)] });
    // Several new positions after a past: the causal mask must start at the past's length.
    const rows = [(await model.runtime.forward(state, { ids: [LONG.slice(1, P)] })).output.slice()];
    for (let t = P; t < LONG.length; t++) rows.push((await model.runtime.forward(state, { ids: [[LONG[t]]] })).output.slice());
    expectClose(concat(rows), concat(expected.slice(P - 1)), `hd ${headDim} incremental logits`);
  });

  it("a left-padded batch, prefill and then decode, gives each row its own float64 logits", async () => {
    const steps = [[3, 21], [600, 9]];
    const longAll = [...LONG, ...steps.map((s) => s[0])];
    const shortAll = [...SHORT, ...steps.map((s) => s[1])];
    const [refLong, refShort] = [ref.logits(longAll), ref.logits(shortAll)];
    const pad = LONG.length - SHORT.length;
    const state = model.runtime.newState(2);
    const mask = [LONG.map(() => 1), [...new Array(pad).fill(0), ...SHORT.map(() => 1)]];
    const ids = [LONG, [...new Array(pad).fill(0), ...SHORT]];
    const V = model.config.vocabSize;
    const check = (out: Float32Array, at: [number, number], what: string) => {
      expectClose(out.subarray(0, V), refLong[at[0]], `hd ${headDim} ${what} row 0`);
      expectClose(out.subarray(V, 2 * V), refShort[at[1]], `hd ${headDim} ${what} row 1`);
    };
    check((await model.runtime.forward(state, { ids, mask })).output, [LONG.length - 1, SHORT.length - 1], "batch prefill");
    for (let k = 0; k < steps.length; k++) {
      const out = await model.runtime.forward(state, { ids: [[steps[k][0]], [steps[k][1]]] });
      check(out.output, [LONG.length + k, SHORT.length + k], `batch decode ${k}`);
    }
  });
});

describe("LFM2 core with head size 12 at q8 and q4", () => {
  it("both run (quantised Linears around the same float attention): finite logits, q8 within 10% relative L2 of fp32", async () => {
    const dir = writeTinyLfm2(root, 12, 8, 2);
    const logits: Record<string, Float32Array> = {};
    for (const precision of ["fp32", "q8", "q4"] as const) {
      const model = await TextModel.load(dir, { cacheDir: TEST_CACHE, precision, threads: 2 });
      try {
        logits[precision] = (await model.runtime.forward(model.runtime.newState(1), { ids: [LONG], keep: LONG.length })).output.slice();
      } finally {
        await model.release();
      }
    }
    for (const precision of ["q8", "q4"]) expect(logits[precision].every(Number.isFinite), precision).toBe(true);
    expect(errorStats(logits.q8, logits.fp32).relL2).toBeLessThan(0.1);
  });
});
