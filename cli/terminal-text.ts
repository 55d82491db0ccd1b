/**
 * Text from documents, file names and models, made safe to print on a terminal. Corpus text or a
 * generated reply can carry ESC/OSC/CSI sequences (retitle the window, rewrite the screen, plant
 * hyperlinks) or bidi overrides that reorder what the user reads; printed raw, they act. Here each
 * such character is shown as a visible escape instead (`\x1b`, `\u202e`). `--json` output keeps
 * the text as it is: JSON.stringify already escapes controls, and scripts need the exact bytes.
 */

// C0 controls but tab and newline, DEL, C1 controls (U+0080–U+009F, incl. the one-byte CSI U+009B),
// and the bidi embedding/override/isolate characters.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_OR_NEWLINE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function visible(c: string): string {
  const code = c.charCodeAt(0);
  if (c === "\n") return "\\n";
  if (c === "\t") return "\\t";
  if (c === "\r") return "\\r";
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

/** Multi-line text (a passage, a reply): newlines and tabs kept, every other control made visible. */
export function terminalText(text: string): string {
  return text.replace(UNSAFE, visible);
}

/** One line of line-based output (a file name, a source): newlines and tabs made visible as well. */
export function terminalLine(text: string): string {
  return text.replace(UNSAFE_OR_NEWLINE, visible);
}

/**
 * Model or user text bound for an output stream: `terminalText` when the stream is a terminal,
 * where escape sequences would act; unchanged when it is a pipe or a file, so
 * `lfm generate … > out.txt` keeps the exact bytes (like --json, which escapes them in JSON).
 */
export function textForStream(text: string, isTTY: boolean | undefined): string {
  return isTTY ? terminalText(text) : text;
}
