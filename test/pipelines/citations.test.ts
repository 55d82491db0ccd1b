/** The citation checker on crafted answers, streamed in every split, and the question-language guess. */
import { describe, expect, it } from "vitest";
import { CitationFilter, checkCitations, strictCitationGrammar } from "../../pipelines/citations.ts";
import { NOT_COVERED, detectLanguage, notCoveredAnswer } from "../../pipelines/question-language.ts";

describe("checkCitations", () => {
  it("keeps citations of given passages and removes (and reports) the others", () => {
    expect(checkCitations("The pump runs at 5 bar [1]. Prime it first [2][3].", 3)).toEqual({
      text: "The pump runs at 5 bar [1]. Prime it first [2][3].",
      cited: [1, 2, 3],
      unsupported: [],
    });
    expect(checkCitations("The pump runs at 5 bar [7]. Prime it [0] first [2].", 3)).toEqual({
      text: "The pump runs at 5 bar. Prime it first [2].",
      cited: [2],
      unsupported: [7, 0],
    });
    // In a list, only the bad numbers go.
    expect(checkCitations("Both [1, 9] and [3; 2].", 3)).toEqual({ text: "Both [1] and [3; 2].", cited: [1, 3, 2], unsupported: [9] });
    // Each number once, in order of first citation.
    expect(checkCitations("A [2]. B [1][2]. C [5]. D [5].", 2)).toEqual({ text: "A [2]. B [1][2]. C. D.", cited: [2, 1], unsupported: [5] });
  });

  it("leaves brackets that are not citations alone", () => {
    for (const text of ["See [note] here.", "An array [a, b] and [] and [1 2].", "[see 2]", "Open bracket [12 at the end", "x[[1]]y"]) {
      const checked = checkCitations(text, 1);
      expect(checked.unsupported).toEqual([]);
      if (!text.includes("[[1]]")) expect(checked.text).toBe(text);
    }
    expect(checkCitations("x[[1]]y", 1)).toEqual({ text: "x[[1]]y", cited: [1], unsupported: [] });
    expect(checkCitations("Since [2023] it works [1].", 1)).toEqual({ text: "Since it works [1].", cited: [1], unsupported: [2023] });
    expect(checkCitations("", 3)).toEqual({ text: "", cited: [], unsupported: [] });
    // With no passages given, every citation is unsupported.
    expect(checkCitations("Yes [1].", 0)).toEqual({ text: "Yes.", cited: [], unsupported: [1] });
  });

  it("streams: any split of the answer emits exactly the whole-answer result, never a removed citation", () => {
    const answers = [
      "The pump runs at 5 bar [7]. Prime it [1] first.\n\nThen [2, 9] check  [3]!",
      "[4] leading and trailing [1]   ",
      "Unicode ポンプ [2]。Stop [12]？ [x] [",
    ];
    for (const answer of answers) {
      const whole = checkCitations(answer, 3);
      const chars = [...answer];
      for (let seed = 1; seed <= 40; seed++) {
        const filter = new CitationFilter(3);
        let out = "";
        let i = 0;
        let r = seed;
        while (i < chars.length) {
          r = (r * 1103515245 + 12345) % 2147483648;
          const n = 1 + (r % 5);
          const piece = filter.push(chars.slice(i, i + n).join(""));
          expect(piece).not.toMatch(/\[(7|9|12|4)\]/);
          out += piece;
          i += n;
        }
        out += filter.flush();
        expect(out).toBe(whole.text);
        expect(filter.cited).toEqual(whole.cited);
        expect(filter.unsupported).toEqual(whole.unsupported);
      }
    }
  });
});

describe("strictCitationGrammar", () => {
  it("lists exactly the given numbers and refuses zero passages", () => {
    const g = strictCitationGrammar(3);
    expect(g).toMatch(/^root ::= /);
    expect(g).toContain(`cite ::= "[" ("1" | "2" | "3") "]"`);
    expect(() => strictCitationGrammar(0)).toThrow(RangeError);
  });
});

describe("question language", () => {
  it("recognises the languages of a multilingual corpus's questions", () => {
    const cases: Array<[string, string | null]> = [
      ["How do I prime the pump before start-up?", "en"],
      ["Comment faut-il amorcer la pompe avant le démarrage ?", "fr"],
      ["Wie muss die Pumpe vor dem Start entlüftet werden?", "de"],
      ["¿Cómo se debe cebar la bomba antes del arranque?", "es"],
      ["Como se deve escorvar a bomba antes da partida?", "pt"],
      ["Hoe moet de pomp worden ontlucht voor het starten?", "nl"],
      ["起動前にポンプの呼び水をするにはどうすればよいですか？", "ja"],
      ["启动前如何给泵灌水？", "zh"],
      ["시동 전에 펌프에 마중물을 어떻게 넣나요?", "ko"],
      ["Как заполнить насос перед пуском?", "ru"],
      ["كيف يتم تحضير المضخة قبل التشغيل؟", "ar"],
      ["P-7 V-12 2000", null],
      ["xq zzv brrt", null],
    ];
    for (const [q, lang] of cases) expect(detectLanguage(q), q).toBe(lang);
  });

  it("says the corpus does not cover the question in its language, else in English and says so", () => {
    expect(notCoveredAnswer("Comment faut-il amorcer la pompe ?")).toEqual({ text: NOT_COVERED.fr, language: "fr", detected: true });
    expect(notCoveredAnswer("P-7 ???")).toEqual({ text: NOT_COVERED.en, language: "en", detected: false });
  });
});
