/**
 * LFM2-ColBERT as one ONNX graph — matches PyLate `ColBERT.forward` + `normalize`:
 *
 *   h = LFM2 core (head "hidden": final-normed hidden states, text-core/lfm2.ts)   [B, S, D]
 *   for each Dense layer:  h = act(h·Wᵀ + b) (+ h, or + h·Rᵀ, with use_residual)
 *   token_embeddings = h / max(‖h‖₂, 1e-12)                                         [B, S, dim]
 *
 * The core is built by `buildLfm2Graph` unchanged; the Dense chain is appended to its open builder
 * after the `last_hidden_state` output, so text-core needs no hook and the projection and the
 * normalisation run inside onnxruntime with the rest. The Dense layers stay fp32 whatever the
 * precision: they are tiny (1024×128) and sit right before the output vectors.
 */
import type { Lfm2Config } from "../text-core/config.ts";
import { LfmError } from "../text-core/errors.ts";
import { ElemType, type GraphBuilder } from "../text-core/graph/builder.ts";
import { geluExact } from "../text-core/graph/blocks.ts";
import { linear } from "../text-core/graph/linear.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { type BuildContext, type WeightSource, expectShape } from "../text-core/graph/weights.ts";
import { buildLfm2Graph, type Lfm2GraphIO } from "../text-core/lfm2.ts";
import type { DenseActivation, DenseLayerSpec } from "./pylate-config.ts";

export const EMBEDDINGS_OUTPUT = "token_embeddings";

/** A Dense layer's weights under graph names `<path>.linear.weight`, `<path>.linear.bias`, `<path>.residual.weight`. */
export interface DenseLayer {
  spec: DenseLayerSpec;
  weights: WeightSource;
}

/** PyTorch's `F.normalize` epsilon: a zero vector stays zero instead of becoming NaN. */
const NORM_EPS = 1e-12;

export function buildColbertGraph(
  config: Lfm2Config,
  backbone: WeightSource,
  prefix: string,
  dense: DenseLayer[],
  precision: Precision,
): { builder: GraphBuilder; io: Lfm2GraphIO } {
  const first = dense[0]?.spec;
  if (first === undefined) throw new LfmError("CONFIG_INVALID", "a ColBERT model needs at least one Dense layer.");
  if (first.inFeatures !== config.hiddenSize) {
    throw new LfmError(
      "CONFIG_INVALID",
      `Dense layer ${first.path} takes ${first.inFeatures} features but the LFM2 backbone's hidden size is ${config.hiddenSize}; the Dense layer belongs to another model.`,
    );
  }
  const { builder: b, io } = buildLfm2Graph(config, backbone, prefix, { precision, head: "hidden", exposeHidden: false });
  const embeddings = projectAndNormalize(b, io.output, dense); // [B, S, dim]
  b.output(embeddings, EMBEDDINGS_OUTPUT, ElemType.FLOAT, ["batch", "kept", dense[dense.length - 1].spec.outFeatures]);
  return { builder: b, io };
}

/** The Dense chain over `hidden` [..., D], then each vector divided by its L2 norm. */
export function projectAndNormalize(b: GraphBuilder, hidden: string, dense: DenseLayer[]): string {
  let h = hidden;
  for (const layer of dense) h = denseLayer(b, h, layer);
  const norm = b.op("ReduceL2", [h, b.constInt64([-1])], "l2.norm", { keepdims: 1 });
  return b.op("Div", [h, b.op("Max", [norm, b.constFloat(NORM_EPS)], "l2.clamped")], "l2.normalized");
}

/** PyLate `Dense.forward`: `act(linear(x))`, then `+ x` (or `+ residual(x)`) with use_residual. */
function denseLayer(b: GraphBuilder, x: string, { spec, weights }: DenseLayer): string {
  const ctx: BuildContext = { b, weights, precision: "fp32" };
  const p = spec.path;
  expectShape(weights, `${p}.linear.weight`, [spec.outFeatures, spec.inFeatures], `out_features × in_features of ${p}/config.json`);
  if (spec.bias) expectShape(weights, `${p}.linear.bias`, [spec.outFeatures], `${p}/config.json says bias: true`);
  const y = activation(ctx, linear(ctx, x, `${p}.linear.weight`, `${p}.linear`, spec.bias ? `${p}.linear.bias` : undefined), spec.activation, p);
  if (!spec.useResidual) return y;
  let residual = x;
  if (spec.inFeatures !== spec.outFeatures) {
    expectShape(weights, `${p}.residual.weight`, [spec.outFeatures, spec.inFeatures], "use_residual with in_features ≠ out_features");
    residual = linear(ctx, x, `${p}.residual.weight`, `${p}.residual`);
  }
  return b.op("Add", [y, residual], `${p}.out`);
}

function activation(ctx: BuildContext, x: string, kind: DenseActivation, p: string): string {
  const { b } = ctx;
  const name = `${p}.activation`;
  switch (kind) {
    case "identity":
      return x;
    case "tanh":
      return b.op("Tanh", [x], name);
    case "relu":
      return b.op("Relu", [x], name);
    case "sigmoid":
      return b.op("Sigmoid", [x], name);
    case "silu":
      return b.op("Mul", [x, b.op("Sigmoid", [x], `${name}.sigmoid`)], name);
    case "leaky_relu":
      return b.op("LeakyRelu", [x], name, { alpha: { f: 0.01 } }); // torch's default slope
    case "gelu":
      return geluExact(ctx, x, name);
  }
}
