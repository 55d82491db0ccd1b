/**
 * A cheap guess at a question's language, for the one sentence `ask` writes itself (the answer
 * when the corpus does not cover the question). No model: the script decides for Japanese,
 * Korean, Chinese, Arabic, Russian (any Cyrillic) and Greek; for Latin-script text, the most
 * frequent function words of eight languages (plus their telltale letters) decide, and a tie or
 * no evidence at all is "unknown" (the sentence is then in English, and the result says so).
 */

export type AnswerLanguage = "en" | "fr" | "de" | "es" | "pt" | "it" | "nl" | "ru" | "el" | "ar" | "zh" | "ja" | "ko";

/** "The indexed documents do not cover this question." in every language `detectLanguage` knows. */
export const NOT_COVERED: Readonly<Record<AnswerLanguage, string>> = {
  en: "The indexed documents do not cover this question.",
  fr: "Les documents indexés ne traitent pas de cette question.",
  de: "Die indexierten Dokumente behandeln diese Frage nicht.",
  es: "Los documentos indexados no tratan esta pregunta.",
  pt: "Os documentos indexados não tratam desta pergunta.",
  it: "I documenti indicizzati non trattano questa domanda.",
  nl: "De geïndexeerde documenten behandelen deze vraag niet.",
  ru: "Проиндексированные документы не касаются этого вопроса.",
  el: "Τα ευρετηριασμένα έγγραφα δεν καλύπτουν αυτή την ερώτηση.",
  ar: "المستندات المفهرسة لا تتناول هذا السؤال.",
  zh: "已索引的文档未涉及这个问题。",
  ja: "索引された文書には、この質問に関する情報がありません。",
  ko: "색인된 문서에는 이 질문에 대한 내용이 없습니다.",
};

const FUNCTION_WORDS: Readonly<Record<"en" | "fr" | "de" | "es" | "pt" | "it" | "nl", readonly string[]>> = {
  en: ["the", "is", "are", "what", "how", "which", "when", "where", "why", "does", "do", "of", "to", "and", "with", "can", "should", "i", "my", "for", "it", "this"],
  fr: ["le", "la", "les", "est", "sont", "quel", "quelle", "quels", "comment", "pourquoi", "des", "du", "une", "et", "dans", "avec", "pour", "que", "qui", "faut", "il", "je", "ce", "où", "quand", "au"],
  de: ["der", "die", "das", "ist", "sind", "wie", "was", "welche", "welcher", "warum", "wann", "und", "mit", "für", "ein", "eine", "nicht", "ich", "wird", "muss", "den", "dem", "wo", "man", "soll"],
  es: ["el", "los", "las", "es", "son", "qué", "cómo", "cuál", "cuándo", "dónde", "por", "para", "con", "una", "y", "del", "se", "debe", "hay", "lo"],
  pt: ["o", "os", "é", "são", "que", "como", "qual", "quando", "onde", "por", "para", "com", "uma", "um", "do", "da", "em", "não", "deve", "há"],
  it: ["il", "lo", "gli", "è", "sono", "che", "come", "quale", "quando", "dove", "perché", "per", "con", "una", "del", "della", "non", "deve", "si"],
  nl: ["de", "het", "een", "is", "zijn", "wat", "hoe", "welke", "waarom", "wanneer", "en", "met", "voor", "van", "niet", "ik", "moet", "waar", "wordt"],
};

/** Letters that (nearly) only one of the Latin-script languages uses. */
const TELLTALE_LETTERS: ReadonlyArray<[RegExp, keyof typeof FUNCTION_WORDS]> = [
  [/[ñ¿¡]/u, "es"],
  [/[ãõ]/u, "pt"],
  [/[äöüß]/u, "de"],
  [/[çèêëîïœù]/u, "fr"],
  [/[ìò]/u, "it"],
  [/ij/u, "nl"],
];

/** The question's language, or null when the cheap signals are not enough. */
export function detectLanguage(text: string): AnswerLanguage | null {
  const count = (re: RegExp) => (text.match(re) ?? []).length;
  if (count(/[\p{Script=Hiragana}\p{Script=Katakana}]/gu) > 0) return "ja";
  const scripts: Array<[AnswerLanguage, number]> = [
    ["ko", count(/\p{Script=Hangul}/gu)],
    ["zh", count(/\p{Script=Han}/gu)],
    ["ar", count(/\p{Script=Arabic}/gu)],
    ["ru", count(/\p{Script=Cyrillic}/gu)],
    ["el", count(/\p{Script=Greek}/gu)],
  ];
  const latin = count(/\p{Script=Latin}/gu);
  const [script, letters] = scripts.reduce((a, b) => (b[1] > a[1] ? b : a));
  if (letters > latin) return script;
  if (latin === 0) return null;

  const words = text.toLowerCase().match(/\p{L}+/gu) ?? [];
  const scores = new Map<keyof typeof FUNCTION_WORDS, number>();
  for (const [lang, list] of Object.entries(FUNCTION_WORDS) as Array<[keyof typeof FUNCTION_WORDS, readonly string[]]>) {
    const set = new Set(list);
    scores.set(lang, words.filter((w) => set.has(w)).length);
  }
  const lower = text.toLowerCase();
  for (const [re, lang] of TELLTALE_LETTERS) if (re.test(lower)) scores.set(lang, (scores.get(lang) ?? 0) + 2);
  const ranked = [...scores].sort((a, b) => b[1] - a[1]);
  if (ranked[0][1] === 0 || ranked[0][1] === ranked[1][1]) return null;
  return ranked[0][0];
}

/** The abstention sentence in the question's language (English when it cannot be told). */
export function notCoveredAnswer(question: string): { text: string; language: AnswerLanguage; detected: boolean } {
  const language = detectLanguage(question);
  return { text: NOT_COVERED[language ?? "en"], language: language ?? "en", detected: language !== null };
}
