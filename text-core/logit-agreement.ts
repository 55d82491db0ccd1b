/** Mean KL(p_ref ‖ p) over rows and top-1 agreement of two [rows, V] logit matrices (quantisation quality: tests, bench/quality.ts). */
export function agreement(reference: Float32Array, other: Float32Array, V: number): { top1: number; kl: number } {
  const rows = reference.length / V;
  let same = 0;
  let kl = 0;
  for (let r = 0; r < rows; r++) {
    const a = reference.subarray(r * V, (r + 1) * V);
    const b = other.subarray(r * V, (r + 1) * V);
    const lse = (x: Float32Array) => {
      let m = -Infinity;
      for (const v of x) m = Math.max(m, v);
      let s = 0;
      for (const v of x) s += Math.exp(v - m);
      return m + Math.log(s);
    };
    const la = lse(a);
    const lb = lse(b);
    let am = 0;
    let bm = 0;
    for (let i = 0; i < V; i++) {
      if (a[i] > a[am]) am = i;
      if (b[i] > b[bm]) bm = i;
      kl += Math.exp(a[i] - la) * (a[i] - la - (b[i] - lb));
    }
    if (am === bm) same++;
  }
  return { top1: same / rows, kl: kl / rows };
}
